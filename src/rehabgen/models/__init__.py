"""Model families behind one contract (`GenerativeModel`): fit, sample, save, load."""

from __future__ import annotations

from rehabgen.models.base import DataSpec, GenerativeModel, ModelError, Normalizer, TrainArrays, prepare_data

_FAMILIES: dict[str, str] = {
    "diffusion": "rehabgen.models.diffusion:DiffusionModel",
    "vae": "rehabgen.models.vae:VAEModel",
    "gan": "rehabgen.models.gan:GANModel",
}


def families() -> list[str]:
    """Names of the families whose module is present."""
    import importlib.util

    return [k for k, v in _FAMILIES.items() if importlib.util.find_spec(v.split(":")[0]) is not None]


def get_family(name: str) -> type[GenerativeModel]:
    import importlib

    if name not in _FAMILIES or name not in families():
        raise ModelError(f"unknown model family {name!r}; available: {families()}")
    mod, cls = _FAMILIES[name].split(":")
    return getattr(importlib.import_module(mod), cls)


__all__ = ["DataSpec", "GenerativeModel", "ModelError", "Normalizer", "TrainArrays", "prepare_data",
           "families", "get_family"]
