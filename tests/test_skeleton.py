from __future__ import annotations

import json

import numpy as np
import pytest

from rehabgen.skeleton import KINECT_V2, Skeleton, SkeletonError


def test_kinect_order_bones_and_mirror():
    sk = KINECT_V2
    assert sk.joints[:4] == ("SpineBase", "SpineMid", "Neck", "Head")
    assert sk.joints[20] == "SpineShoulder" and sk.joints[24] == "ThumbRight"
    assert sk.n_joints == 25 and len(sk.bones) == 24 and sk.root == 0
    assert sk.parents[sk.index("Neck")] == sk.index("SpineShoulder")
    assert sk.parents[sk.index("HandTipLeft")] == sk.index("HandLeft")
    perm = sk.mirror_permutation()
    for j, name in enumerate(sk.joints):
        other = name.replace("Left", "#").replace("Right", "Left").replace("#", "Right")
        assert sk.joints[perm[j]] == other
    assert (perm[perm] == np.arange(25)).all()


def test_roundtrip_json_and_names_as_parents(tmp_path):
    f = tmp_path / "sk.json"
    f.write_text(json.dumps(KINECT_V2.to_dict()))
    assert Skeleton.from_json(f) == KINECT_V2
    tiny = Skeleton.from_dict({"joints": ["root", "a", "b"], "parents": [None, "root", "a"], "mirror": []})
    assert tiny.parents == (-1, 0, 1) and tiny.bones == [(0, 1), (1, 2)]


@pytest.mark.parametrize("d,msg", [
    ({"joints": ["a", "b"], "parents": [-1]}, "2 joints but 1 parents"),
    ({"joints": ["a", "b"], "parents": [-1, -1]}, "exactly one root"),
    ({"joints": ["a", "b"], "parents": [-1, 5]}, "out of range"),
    ({"joints": ["a", "b", "c"], "parents": [-1, 2, 1]}, "cycle"),
    ({"joints": ["a", "b"], "parents": [-1, "zz"]}, "unknown joint name 'zz'"),
    ({"joints": ["a"]}, "lacks the key 'parents'"),
])
def test_bad_skeletons_are_named(d, msg):
    with pytest.raises(SkeletonError, match=msg):
        Skeleton.from_dict(d, source="x.json")


def test_bad_json_file(tmp_path):
    f = tmp_path / "sk.json"
    f.write_text("{not json")
    with pytest.raises(SkeletonError, match=r"sk.json: not valid JSON"):
        Skeleton.from_json(f)
    with pytest.raises(SkeletonError, match="not found"):
        Skeleton.from_json(tmp_path / "missing.json")


def test_bone_lengths():
    p = np.zeros((2, 25, 3))
    p[:, 1] = [0, 0.3, 0]
    bl = KINECT_V2.bone_lengths(p)
    assert bl.shape == (2, 24)
    assert bl[0, KINECT_V2.bones.index((0, 1))] == pytest.approx(0.3)
