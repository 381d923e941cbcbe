"""Stick-figure animations (GIF, or MP4 when imageio-ffmpeg is installed) and static plots.

Drawn with matplotlib's Agg backend so it works headless; one panel per sequence, all panels
sharing the same axes limits so sizes and positions are comparable at a glance.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from rehabgen.skeleton import Skeleton  # noqa: E402

VIEWS = ("front", "side", "top")


def _project(p: np.ndarray, view: str) -> np.ndarray:
    """(..., 3) camera coordinates -> (..., 2) screen coordinates.

    Kinect's x grows to the sensor's left, so the image seen from the camera shows -x.
    """
    if view == "front":
        return np.stack([-p[..., 0], p[..., 1]], -1)
    if view == "side":
        return np.stack([p[..., 2], p[..., 1]], -1)
    if view == "top":
        return np.stack([-p[..., 0], p[..., 2]], -1)
    raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")


def _colour_of_bone(skeleton: Skeleton, child: int) -> str:
    name = skeleton.joints[child]
    if "Left" in name or name.lower().startswith("l"):
        return "tab:blue"
    if "Right" in name or name.lower().startswith("r"):
        return "tab:red"
    return "0.2"


def render_gif(
    sequences: list[np.ndarray],
    skeleton: Skeleton,
    out: str | Path,
    titles: list[str] | None = None,
    valid: list[np.ndarray] | None = None,
    fps: float = 15.0,
    view: str = "front",
    max_frames: int = 120,
    cols: int | None = None,
    panel_size: float = 2.4,
    dpi: int = 60,
) -> Path:
    """Animate sequences (each (T, J, 3), metres) side by side and write a GIF or MP4.

    Frames are subsampled to at most `max_frames` (the playback rate is scaled to keep real
    time). Joints marked invalid in `valid` are drawn as grey crosses so dropouts stay visible.
    """
    out = Path(out)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"{out}: unsupported animation format {out.suffix.lower()!r} (use .gif or .mp4)")
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")
    if not sequences:
        raise ValueError("nothing to render: no sequences given")
    seqs = [np.asarray(s, dtype=np.float64) for s in sequences]
    for i, s in enumerate(seqs):
        if s.ndim != 3 or s.shape[1:] != (skeleton.n_joints, 3):
            raise ValueError(f"sequence {i} has shape {s.shape}, expected (T, {skeleton.n_joints}, 3)")
    n = len(seqs)
    cols = cols or min(n, 5)
    rows = math.ceil(n / cols)
    T = max(s.shape[0] for s in seqs)
    stride = max(1, math.ceil(T / max_frames))
    frames = list(range(0, T, stride))
    play_fps = max(1.0, fps / stride)

    proj = [_project(s, view) for s in seqs]
    # centre each panel on its own mean so sequences far apart in the room still fill the panel
    centres = [np.nanmean(p.reshape(-1, 2), axis=0) for p in proj]
    spans = [np.nanmax(np.abs(p.reshape(-1, 2) - c), axis=0) for p, c in zip(proj, centres)]
    half = float(np.nanmax(np.stack(spans))) * 1.1 if spans else 1.0
    if not np.isfinite(half) or half <= 0:
        half = 1.0

    fig, axes = plt.subplots(rows, cols, figsize=(panel_size * cols, panel_size * rows), squeeze=False)
    bones = skeleton.bones
    colours = [_colour_of_bone(skeleton, c) for _, c in bones]
    artists = []
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        c = centres[k]
        ax.set_xlim(c[0] - half, c[0] + half)
        ax.set_ylim(c[1] - half, c[1] + half)
        ax.set_aspect("equal")
        if titles and k < len(titles):
            ax.set_title(titles[k], fontsize=8)
        lc = LineCollection([], colors=colours, linewidths=2)
        ax.add_collection(lc)
        (pts,) = ax.plot([], [], "o", ms=2, color="k")
        (bad,) = ax.plot([], [], "x", ms=4, color="0.6")
        artists.append((lc, pts, bad))
    counter = fig.text(0.01, 0.01, "", fontsize=7)
    fig.tight_layout()

    def draw(f: int):
        for k, (lc, pts, bad) in enumerate(artists):
            p = proj[k]
            t = min(f, p.shape[0] - 1)
            q = p[t]
            ok = np.isfinite(q).all(-1)
            if valid is not None and k < len(valid) and valid[k] is not None:
                ok = ok & np.asarray(valid[k])[min(t, len(valid[k]) - 1)]
            segs = [[q[a], q[b]] if ok[a] and ok[b] else [[np.nan, np.nan], [np.nan, np.nan]] for a, b in bones]
            lc.set_segments(segs)
            pts.set_data(q[ok, 0], q[ok, 1])
            fin = np.isfinite(q).all(-1) & ~ok
            bad.set_data(q[fin, 0], q[fin, 1])
        counter.set_text(f"frame {f}")
        return []

    if out.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg
        except ImportError:
            plt.close(fig)
            raise RuntimeError("MP4 output needs the imageio-ffmpeg package: pip install 'rehabgen[video]'") from None
        matplotlib.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
        writer = animation.FFMpegWriter(fps=play_fps)
    else:
        writer = animation.PillowWriter(fps=play_fps)
    anim = animation.FuncAnimation(fig, draw, frames=frames, blit=False)
    return _write_then_rename(out, lambda tmp: anim.save(tmp, writer=writer, dpi=dpi), fig)


def save_figure(fig, out: str | Path) -> Path:
    """Save a matplotlib figure atomically (temp file, then rename)."""
    return _write_then_rename(out, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"), fig)


def _write_then_rename(out: str | Path, write, fig) -> Path:
    """Call write(tmp_path) for a temp file beside `out`, then rename it; always close `fig`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=out.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
