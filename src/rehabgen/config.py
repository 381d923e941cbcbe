"""The configuration of a training run: one schema, one default per setting, one validation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from rehabgen.preprocess import PreprocessConfig

MAX_LEN = 80  # frames at the model's rate; longer recordings are cropped (80 at 5 fps = 16 s)


class ConfigError(ValueError):
    """A setting is out of range or of the wrong type; the message names the option."""


@dataclass
class RunConfig:
    """Every setting of a training run, with its one default. The CLI, `train_run`, config.json
    and `--resume` all read this class; a new training option is one field here."""

    data: str | None = None  # data folder (KIMORE layout or generic import)
    model: str = "diffusion"  # family name
    steps: int = 3000  # optimizer steps (the learning-rate schedule spans them); real KIMORE, 3 seeds: 2,000 left Es1 at 0.72x the real speed (README)
    seed: int = 0  # weights, batches, split, noise
    max_len: int = MAX_LEN
    test_fraction: float = 0.2  # share of subjects held out for evaluation
    fold: int | None = None  # hold out fold `fold` of a subject-wise `folds`-fold partition instead (same subjects for every --seed)
    folds: int = 5
    max_minutes: float | None = None  # stop (checkpointed) after this wall time
    ckpt_every: int = 200  # checkpoint period in steps
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)  # its fps is the model's frame rate
    hparams: dict = field(default_factory=dict)  # family hyper-parameters (resolved ones in config.json)
    log_with: str = "csv"  # experiment tracker (rehabgen.tracking): csv (log.csv only), tensorboard or wandb

    # what may change when a run is continued: the target (a longer schedule), the time budget,
    # and where its curves are sent (none of them changes what is trained)
    RESUMABLE: ClassVar[tuple[str, ...]] = ("steps", "max_minutes", "log_with")

    def to_dict(self) -> dict:
        return {**asdict(self), "preprocess": self.preprocess.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """From config.json (which also holds facts about the run: counts, versions; ignored here)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "preprocess" in kw:
            kw["preprocess"] = PreprocessConfig.from_dict(kw["preprocess"])
        return cls(**kw)

    def check(self) -> "RunConfig":
        """Raise ConfigError naming the command-line option of the first setting out of range,
        before any data is read or any file is written."""
        check_int(self.steps, "--steps", 1)
        check_int(self.seed, "--seed", 0)
        check_int(self.max_len, "--max-len", 8)
        check_int(self.ckpt_every, "--ckpt-every", 1)
        check_number(self.test_fraction, "--test-fraction", 0.0, 1.0, hi_open=True)
        check_int(self.folds, "--folds", 2)
        if self.fold is not None:
            check_int(self.fold, "--fold", 0)
            if self.fold >= self.folds:
                raise ConfigError(f"--fold must be in [0, {self.folds - 1}] (--folds {self.folds}), got {self.fold}")
        if self.max_minutes is not None:
            check_number(self.max_minutes, "--minutes", 0.0, lo_open=True)
        check_number(self.preprocess.fps, "--fps", 0.0, lo_open=True)
        check_tracker(self.log_with)  # its package, if any, must be installed
        return self


# experiment trackers (`rehabgen.tracking`): the packages accelerate's tracker imports (any one
# of them), and how to get them
TRACKERS = ("csv", "tensorboard", "wandb")
# the downstream study's generated data: each real sequence's score, or scores drawn over the exercise's range
GEN_SCORES = ("matched", "balanced")
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
INSTALL = {"tensorboard": "pip install 'rehabgen[tensorboard]'", "wandb": "pip install wandb"}


def tracker_available(name: str) -> bool:
    """Whether the package behind tracker `name` can be imported (csv needs none)."""
    import importlib.util

    return name == "csv" or any(importlib.util.find_spec(m) is not None for m in _PACKAGES[name])


def check_tracker(name: str | None, option: str = "--log-with") -> str:
    """The tracker's name, or a ConfigError in one line: an unknown name lists the known ones; a
    tracker whose package is missing says what to install. Called before any work starts."""
    if name not in TRACKERS:
        raise ConfigError(f"{option} must be one of {', '.join(TRACKERS)}, got {name!r}")
    if not tracker_available(name):
        raise ConfigError(f"{option} {name}: the {_PACKAGES[name][0]} package is not installed; {INSTALL[name]}")
    return name


def check_int(v, name: str, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")


def check_number(v, name: str, lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> None:
    """A finite number in [lo, hi] (an open end where asked); the message states the range."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not (ok and (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))):
        rng = f"a number {'>' if lo_open else '>='} {lo:g}" if hi is None else \
            f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"{name} must be {rng}, got {v!r}")


# hyper-parameters whose range is narrower than "a number >= 0"
_UNIT = ("dropout", "ema")  # and every p_* key: probabilities and averaging rates in [0, 1]
_POSITIVE = ("lr", "critic_lr")


def check_hparams(defaults: dict, given: dict, family: str, choices: dict | None = None, option: str = "--set") -> None:
    """Each given hyper-parameter must be known to the family and of its default's type (and
    one of `choices[key]` where given): an unknown key lists the known ones; `d_model=abc`
    names the type expected."""
    for k, v in given.items():
        if k not in defaults:
            raise ConfigError(f"{option} {k}: unknown hyper-parameter of the {family} family; known: "
                              f"{', '.join(sorted(defaults))}")
        d, name = defaults[k], f"{option} {k}"
        if choices and k in choices and v not in choices[k]:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, choices[k]))}, got {v!r}")
        if isinstance(d, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{name} must be true or false, got {v!r}")
        elif isinstance(d, int):
            if isinstance(v, bool) or not isinstance(v, int) or v < min(1, d):
                raise ConfigError(f"{name} must be an integer >= {min(1, d)}, got {v!r} (default {d})")
        elif isinstance(d, float) or d is None:  # None: an optional number
            if v is not None or d is not None:
                lo, hi = (0.0, 1.0) if k in _UNIT or k.startswith("p_") else (0.0, None)
                try:
                    check_number(v, name, lo, hi, lo_open=k in _POSITIVE)
                except ConfigError as e:
                    raise ConfigError(f"{e} (default {d})") from None
        elif isinstance(d, str) and not isinstance(v, str):
            raise ConfigError(f"{name} must be text, got {v!r} (default {d!r})")
