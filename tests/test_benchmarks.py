"""The real-data benchmark's own logic (benchmarks/real_kimore.py): its reuse of finished reports
and its tables. No training: the runs and reports are planted by the test."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("real_kimore", ROOT / "benchmarks" / "real_kimore.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _plant(out: Path, family: str, seed: int, report: str, metrics: dict) -> Path:
    """A finished run (only what the benchmark checks for) with one report."""
    run = out / f"{family}_s{seed}"
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.json").write_text("{}")
    (run / "train_summary.json").write_text(json.dumps({"seconds": 123.0}))
    (run / report).mkdir()
    (run / report / "metrics.json").write_text(json.dumps(metrics))
    return run / report


def _result(fid: float, real_fid: float, rmse: dict) -> dict:
    """A report's metrics.json with FID and a downstream study: rmse {condition: overall RMSE}."""
    cond = {c: {"held_out_test": {"rmse": {"mean": v}, "per_exercise": {"Es1": {"rmse": {"mean": v + 1}}}}}
            for c, v in rmse.items()}
    return {"metrics": {"fid": {"generated": {"mean": fid}, "real_reference": {"mean": real_fid}}},
            "downstream": {"gen_scores": "balanced", "conditions": cond}}


def test_a_finished_report_is_reused_without_evaluating(bench, tmp_path, monkeypatch):
    _plant(tmp_path, "vae", 0, "report", {"metrics": {}, "downstream": {"gen_scores": "balanced"}})
    monkeypatch.setattr(bench, "evaluate_run", lambda *a, **k: pytest.fail("a finished report was evaluated again"))
    monkeypatch.setattr(bench, "train_run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    res = bench.run_one("data", "vae", 0, 10, tmp_path, None, 1, 3)  # the VAE's study default: balanced
    assert res["train_seconds"] == 123.0 and res["downstream"]["gen_scores"] == "balanced"


def test_a_report_made_under_another_study_default_stops_the_benchmark(bench, tmp_path, monkeypatch):
    rep = _plant(tmp_path, "vae", 0, "report", {"metrics": {}, "downstream": {"gen_scores": "matched"}})
    monkeypatch.setattr(bench, "evaluate_run", lambda *a, **k: pytest.fail("evaluated instead of stopping"))
    with pytest.raises(SystemExit, match="holds a downstream study on 'matched' scores") as e:
        bench.run_one("data", "vae", 0, 10, tmp_path, None, 1, 3)
    assert str(rep) in str(e.value) and "default became 'balanced'" in str(e.value)
    # the GAN's study default is matched scores, so its matched report is the one to reuse
    _plant(tmp_path / "other", "gan", 0, "report", {"metrics": {}, "downstream": {"gen_scores": "matched"}})
    assert bench.run_one("data", "gan", 0, 10, tmp_path / "other", None, 1, 3)["train_seconds"] == 123.0


def test_report_folders_name_what_differs_from_the_defaults(bench):
    assert bench.sampler_tag({"guidance": 1.75, "drift_guidance": None, "repetition_guidance": 2.5}) == "_g1.75_rg2.5"
    assert bench.sampler_tag({}) == ""
    assert bench.scores_tag(None) == "" and bench.scores_tag("matched") == "_matched"


def test_table_gives_mean_and_std_over_seeds_beside_the_real_reference(bench):
    res = {"diffusion": [_result(1.0, 2.0, {"real": 16.0, "real+generated": 14.0}),
                         _result(3.0, 4.0, {"real": 18.0, "real+generated": 15.0})],
           "gan": [_result(5.0, 2.0, {"real": 16.0, "real+generated": 17.0})]}
    md = bench.table(res).splitlines()
    assert md[0] == "| metric | real reference | diffusion (2 seeds) | gan (1 seeds) |"
    fid = next(line for line in md if line.startswith("| FID"))
    # real reference over all 3 runs: mean 8/3, std of (2, 4, 2); diffusion over its 2 seeds; gan single
    assert fid.endswith("| 2.667 ± 0.943 | 2.000 ± 1.000 | 5.000 |")
    real = next(line for line in md if line.startswith("| downstream TS RMSE, real ↓"))
    assert real == "| downstream TS RMSE, real ↓ | 16.667 ± 0.943 | – | – |"  # real only is every family's reference
    gen = next(line for line in md if line.startswith("| downstream TS RMSE, real+generated ↓"))
    assert gen == "| downstream TS RMSE, real+generated ↓ | – | 14.500 ± 0.500 | 17.000 |"
    gen_es1 = next(line for line in md if line.startswith("| downstream TS RMSE, real+generated, Es1"))
    assert gen_es1.endswith("| 15.500 ± 0.500 | 18.000 |")
    # the downstream target in one row: mean real+generated against mean real only, per exercise too
    gain = next(line for line in md if line.startswith("| downstream: real+generated against real only"))
    # diffusion: 14.5 / 17 - 1 = -14.7 %, Es1 15.5 < 18; gan: 17 / 16 - 1 = +6.25 %, Es1 18 > 17
    assert gain == ("| downstream: real+generated against real only (mean over runs) | – | "
                    "-14.7 %, better on 1 of 1 exercises | +6.2 %, better on 0 of 1 exercises |")
    assert not any("real+windows" in line for line in md)  # a study without the control adds no row
    ctl = {"diffusion": [_result(1.0, 2.0, {"real": 16.0, "real+generated": 14.0, "real+windows": 15.0}),
                         _result(3.0, 4.0, {"real": 18.0, "real+generated": 15.0, "real+windows": 16.0})]}
    md = bench.table(ctl).splitlines()
    assert "| downstream TS RMSE, real+windows ↓ | – | 15.500 ± 0.500 |" in md  # per family: its own window
    assert ("| downstream control: real+windows (the generator's training windows) against real only | – | "
            "-8.8 %, better on 1 of 1 exercises |") in md


def test_table_gives_the_rmse_parts_when_the_study_has_them(bench):
    """bias and within-exercise r rows per network condition; a study from before them adds none."""
    def with_parts(rmse: dict, r: dict) -> dict:
        res = _result(1.0, 2.0, rmse)
        for c, side in res["downstream"]["conditions"].items():
            side["held_out_test"].update(bias={"mean": rmse[c] / 2}, within_r={"mean": r[c]})
        return res

    res = {"diffusion": [with_parts({"real": 16.0, "real+generated": 14.0}, {"real": 0.0, "real+generated": 0.2}),
                         with_parts({"real": 18.0, "real+generated": 15.0}, {"real": 0.1, "real+generated": 0.1})]}
    md = bench.table(res).splitlines()
    assert "| downstream within-exercise r, real ↑ | 0.050 ± 0.050 | – |" in md
    assert "| downstream within-exercise r, real+generated ↑ | – | 0.150 ± 0.050 |" in md
    assert "| downstream bias part of the RMSE, real+generated ↓ | – | 7.250 ± 0.250 |" in md
    assert not any("within-exercise r, tstr" in line for line in md)  # no tstr in these studies
    old = bench.table({"diffusion": [_result(1.0, 2.0, {"real": 16.0, "real+generated": 14.0})]})
    assert "within-exercise" not in old and "bias part" not in old


def test_study_seeds_get_their_own_report_folder(bench, tmp_path, monkeypatch):
    """--downstream-repeats 3 is another measurement than one study seed: report..._r3, not a reuse of
    report; three generated per real one (--downstream-per-real 3) is report..._p3."""
    _plant(tmp_path, "vae", 0, "report", {"metrics": {}, "downstream": {"gen_scores": "balanced"}})
    calls = []

    def fake_evaluate(run, data, rep, **kw):
        calls.append((Path(rep).name, kw["downstream_repeats"]))
        return {"metrics": {}, "downstream": {"gen_scores": "balanced"}}

    monkeypatch.setattr(bench, "evaluate_run", fake_evaluate)
    bench.run_one("data", "vae", 0, 10, tmp_path, None, 1, 3, downstream_repeats=3)
    assert calls == [("report_r3", 3)]
    calls.clear()
    monkeypatch.setattr(bench, "evaluate_run", lambda run, data, rep, **kw: calls.append(
        (Path(rep).name, kw["downstream_per_real"])) or {"metrics": {}, "downstream": {"gen_scores": "balanced"}})
    bench.run_one("data", "vae", 0, 10, tmp_path, None, 1, 3, downstream_repeats=3, downstream_per_real=3)
    assert calls == [("report_r3_p3", 3)]
