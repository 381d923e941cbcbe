"""Which device and precision a command runs on: `--device auto|cpu|cuda|cuda:N`, `--precision`.

CUDA is a speed-up, never a requirement: `auto` falls back to the CPU, and asking for a GPU that
is not there is a one-line error before any work starts.

Reproducibility across devices: every random number a model draws while sampling (initial
noise, latents, solver noise) comes from a CPU `torch.Generator` seeded by `--seed` and is then
moved to the device, so a seed gives the same noise on every device and the outputs differ only
by floating-point arithmetic (CPU vs GPU kernels, and bf16/fp16 when chosen). Same seed, same
device, same thread count: identical output.
"""

from __future__ import annotations

import contextlib

import torch

DEVICE_HELP = "Device: auto (CUDA when available), cpu, cuda or cuda:N."
PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_HELP = ("Network arithmetic when sampling: fp32, bf16 (CPU or CUDA) or fp16 (CUDA only); "
                  "the solver itself always runs in fp32.")


class DeviceError(ValueError):
    pass


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a torch.device that exists here, or a DeviceError."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        idx = name[5:]
        if idx and not idx.isdigit():
            raise DeviceError(f"--device {name!r}: expected cuda or cuda:N with N a number")
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device here (torch {torch.__version__} sees none); "
                              "use --device cpu or auto")
        n = torch.cuda.device_count()
        if idx and int(idx) >= n:
            raise DeviceError(f"--device {name}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return torch.device(name)
    raise DeviceError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("--precision fp16 needs a CUDA device (CPUs have no fast fp16 arithmetic); use bf16 or fp32")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the network's forward passes; fp32 = nothing changes."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
