"""Model folders on disk: `model.safetensors` (weights, EMA weights) + `model.json` (metadata).

Never pickles: the weights are plain tensors and everything else is JSON, so loading a model
runs no code from the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from rehabgen.io import save_weights_dir
from rehabgen.models.spec import ModelError

FORMAT_VERSION = 2  # 2: smooth score embedding (3 Fourier frequencies instead of 8)


def write_model_dir(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write the folder atomically (a crash leaves the old model or none, never half of one)."""
    return save_weights_dir(path, "model", tensors, {"format_version": FORMAT_VERSION, **meta})


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a model folder, with one clear error for each way it can be wrong."""
    path = Path(path)
    mj, mw = path / "model.json", path / "model.safetensors"
    if not mj.is_file() or not mw.is_file():
        raise ModelError(f"{path}: not a model folder (needs model.json and model.safetensors)")
    try:
        meta = json.loads(mj.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{mj}: not valid JSON ({e.msg})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{mj}: format version {meta.get('format_version')} not supported (expected {FORMAT_VERSION}; "
                         "models saved by rehabgen before the smooth score embedding must be retrained)")
    try:
        tensors = load_file(mw)
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{mw}: unreadable weights ({e})") from None
    return meta, tensors
