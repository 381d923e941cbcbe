"""The configuration of a training run: one schema, one default per setting."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from rehabgen.preprocess import PreprocessConfig

MAX_LEN = 80  # frames at the model's rate; longer recordings are cropped (80 at 5 fps = 16 s)


@dataclass
class RunConfig:
    """Every setting of a training run, with its one default. The CLI, `train_run`, config.json
    and `--resume` all read this class; a new training option is one field here."""

    data: str | None = None  # data folder (KIMORE layout or generic import)
    model: str = "diffusion"  # family name
    steps: int = 2000  # optimizer steps (the learning-rate schedule spans them)
    seed: int = 0  # weights, batches, split, noise
    max_len: int = MAX_LEN
    test_fraction: float = 0.2  # share of subjects held out for evaluation
    max_minutes: float | None = None  # stop (checkpointed) after this wall time
    ckpt_every: int = 200  # checkpoint period in steps
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)  # its fps is the model's frame rate
    hparams: dict = field(default_factory=dict)  # family hyper-parameters (resolved ones in config.json)

    # what may change when a run is continued: the target (a longer schedule) and the time budget
    RESUMABLE: ClassVar[tuple[str, ...]] = ("steps", "max_minutes")

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
