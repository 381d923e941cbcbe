"""What a family can do, and the options of its sampler, as data instead of family-name checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Capabilities:
    """Declared by each family (class attribute `capabilities`); entry points ask these flags.

    inpaint:  `generate` accepts `known`/`known_mask` (completion of lost joints/frames).
    text:     can be trained with a sentence encoder and sampled from free text.
    timeline: `generate` accepts `segments` (several conditions in a row, seams in-betweened).
    sampler:  sampling is an iterative solver (`SamplerOptions` sampler, steps, guidance apply).
    options:  the `SamplerOptions` fields `sample` accepts; any other one set is an error.
    """

    inpaint: bool = False
    text: bool = False
    timeline: bool = False
    sampler: bool = False
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplerOptions:
    """Options of an iterative sampler; None = the model's own default (its hyper-parameters)."""

    sampler: str | None = None  # "dpm", "ddim", "ddpm", or "distilled" (models from `rehabgen distill`)
    steps: int | None = None  # solver steps (network evaluations, x2/x3 with guidance)
    guidance: float | None = None  # classifier-free guidance scale on all conditions
    score_guidance: float | None = None  # a separate scale for the score's own effect
    drift_guidance: float | None = None  # guidance for motion slower than 0.1 Hz (the window's drift)
    repetition_guidance: float | None = None  # guidance for motion at 0.1-0.5 Hz (the repetitions)
    drift_temperature: float | None = None  # scale of the starting noise below 0.1 Hz, every exercise
    temperature: float | None = None  # latent scale of one-pass families (0: the mean sample)

    def given(self) -> dict:
        """The options that were set, for run records."""
        return {k: v for k, v in asdict(self).items() if v is not None}
