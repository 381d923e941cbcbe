"""Model families by name. The only place that maps names to classes: everything else asks a
model's `capabilities`. A family outside the package (a plug-in, a test) calls `register_family`."""

from __future__ import annotations

import importlib
import importlib.util

from rehabgen.models.spec import ModelError

_FAMILIES: dict[str, str | type] = {
    "diffusion": "rehabgen.models.diffusion:DiffusionModel",
    "vae": "rehabgen.models.vae:VAEModel",
    "gan": "rehabgen.models.gan:GANModel",
}


def register_family(name: str, cls: type) -> None:
    """Make a family available to `get_family`, `load_model` and the CLI under `name`."""
    if getattr(cls, "family", None) != name:
        raise ModelError(f"family class {cls.__name__} must set family = {name!r}")
    _FAMILIES[name] = cls


def families() -> list[str]:
    """Names of the families whose module is present."""
    return [k for k, v in _FAMILIES.items()
            if not isinstance(v, str) or importlib.util.find_spec(v.split(":")[0]) is not None]


def get_family(name: str) -> type:
    if name not in _FAMILIES or name not in families():
        raise ModelError(f"unknown model family {name!r}; available: {families()}")
    target = _FAMILIES[name]
    if not isinstance(target, str):
        return target
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls)
