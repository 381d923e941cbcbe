"""Model families behind one contract (`GenerativeModel`): fit, sample, save, load.

spec.py      data spec, normaliser, prepare_data (the same data for every family)
base.py      the contract;  options.py  capabilities and sampler options;  ema.py  inference context
checkpoint.py  safetensors + JSON model folders;  registry.py  family names -> classes
diffusion.py vae.py gan.py  one file per family;  inpainting.py timeline.py  what some families can do
"""

from __future__ import annotations

from rehabgen.models.base import GenerativeModel
from rehabgen.models.options import Capabilities, SamplerOptions
from rehabgen.models.registry import families, get_family, register_family
from rehabgen.models.spec import DataSpec, ModelError, Normalizer, TrainArrays, prepare_data

__all__ = ["Capabilities", "DataSpec", "GenerativeModel", "ModelError", "Normalizer", "SamplerOptions", "TrainArrays",
           "families", "get_family", "prepare_data", "register_family"]
