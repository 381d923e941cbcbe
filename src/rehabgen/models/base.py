"""The contract every generative model family shares (fit / sample / save / load).

A family is one file: a subclass of `GenerativeModel` that sets `family`, `defaults` and
`capabilities`, builds its networks, says how one training step goes and how to generate in
normalised space. Data handling lives in `spec` (the same for every family), weight averaging
and the inference context in `ema`, persistence in `checkpoint`; what only some families can
do (inpainting, timelines) is declared in `capabilities` and lives beside those families.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from rehabgen.config import MAX_LEN
from rehabgen.devices import autocast, check_precision, resolve_device
from rehabgen.data.dataset import Dataset
from rehabgen.models.ema import Shadow, ema_update, inference
from rehabgen.models.checkpoint import read_checkpoint, write_model_dir
from rehabgen.models.options import Capabilities, SamplerOptions
from rehabgen.models.registry import get_family
from rehabgen.models.spec import DataSpec, ModelError, TrainArrays, prepare_data
from rehabgen.preprocess import PreprocessConfig
from rehabgen.text.conditioning import embed, read_quality
from rehabgen.train import train

# hyper-parameters every family has (the training loop reads them), with their defaults
COMMON_HPARAMS = {"lr": 2e-4, "batch_size": 32, "weight_decay": 0.0, "grad_clip": 1.0, "ema": 0.0,
                  "augment": ""}  # "mirror", "warp" or "mirror,warp": label-preserving training copies


class GenerativeModel:
    """Base of every family. Subclasses set `family`, `defaults`, `capabilities` and implement
    `build`, `generate` (and `train_step` when one loss and one optimizer don't fit; `inpaint`
    when they declare `capabilities.inpaint`)."""

    family: ClassVar[str] = "base"
    defaults: ClassVar[dict] = {}
    choices: ClassVar[dict[str, tuple]] = {}  # hyper-parameters that take one of a few values
    capabilities: ClassVar[Capabilities] = Capabilities()
    # hyper-parameters added after models were saved, with the value that reproduces those
    # models' behaviour (a checkpoint without the key loads with this, not the new default)
    absent_before: ClassVar[dict] = {}
    # how this family's samples are made as training data for an assessor: the downstream
    # study's defaults (`rehabgen evaluate --downstream-*` overrides each). "scores": "matched"
    # (each real sequence's) or "balanced" (uniform over the exercise's range); any other key is a
    # `SamplerOptions` field, used for the study's data only
    study_defaults: ClassVar[dict] = {"scores": "matched"}

    def __init__(self, spec: DataSpec, **hparams):
        unknown = set(hparams) - set(self.defaults) - set(COMMON_HPARAMS)
        if unknown:
            raise ModelError(f"{self.family}: unknown hyper-parameter(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        for k, allowed in self.choices.items():
            if k in hparams and hparams[k] not in allowed:
                raise ModelError(f"{k} must be one of {', '.join(map(repr, allowed))}, got {hparams[k]!r}")
        self.spec = spec
        self.hparams = {**COMMON_HPARAMS, **self.defaults, **hparams}
        self.nets: dict[str, nn.Module] = self.build()
        self.step = 0
        self.ema: Shadow = {}  # averaged weights, used for sampling when hparams["ema"] > 0
        self.precision = "fp32"  # the networks' arithmetic when sampling (`to`)

    # ---- to implement ---------------------------------------------------------------------
    def build(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def loss(self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Training loss of one batch (single-optimizer families)."""
        raise NotImplementedError

    def generate(self, exercise: torch.Tensor, score: torch.Tensor, length: int, generator: torch.Generator,
                 options: SamplerOptions, text: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised motion (n, length, J*3) for conditions exercise (n,) long (the null label
        len(exercises) = free), score (n,) in [0, 1] (NaN = free), text (n, D_text) or None."""
        raise NotImplementedError

    def inpaint(self, exercise: torch.Tensor, score: torch.Tensor, known: torch.Tensor, known_mask: torch.Tensor,
                generator: torch.Generator, options: SamplerOptions) -> torch.Tensor:
        """Standardised motion (n, T, J*3) equal to `known` (n, T, J*3) where `known_mask` (n, T, J)
        is set, generated elsewhere. Families that declare `capabilities.inpaint` implement it."""
        raise ModelError(f"the {self.family} family can't complete sequences (no inpainting)")

    # ---- training hooks (defaults: one optimizer over all nets, one loss) ------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = [p for net in self.nets.values() for p in net.parameters()]
        return {"main": torch.optim.AdamW(params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])}

    def train_step(self, nets, optimizers, batch, accelerator) -> dict:
        opt = optimizers["main"]
        loss, logs = self.loss(nets, batch)
        accelerator.backward(loss)
        if self.hparams["grad_clip"]:
            accelerator.clip_grad_norm_([p for n in nets.values() for p in n.parameters()], self.hparams["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": loss.detach(), **logs}  # tensors: read back at log steps only

    def after_training(self, arrays: TrainArrays, seed: int = 0) -> None:
        """Called once training ends, before the model is saved: settings fitted to the training
        data (the diffusion model's drift temperatures). Nothing by default."""

    def ema_update(self, nets: dict[str, nn.Module] | None = None) -> None:
        ema_update(self.ema, nets or self.nets, float(self.hparams["ema"]), self.step)

    def inference(self) -> contextlib.AbstractContextManager:
        """The one context every sampling entry point runs in: eval mode, averaged weights, no
        autograd, and the chosen precision on the model's device."""
        stack = contextlib.ExitStack()
        stack.enter_context(inference(self.nets, self.ema))
        stack.enter_context(autocast(self.device, self.precision))
        return stack

    # ---- device ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the networks are; every tensor a model makes for them is made (or moved) there."""
        for net in self.nets.values():
            for p in net.parameters():
                return p.device
        return torch.device("cpu")

    def to(self, device: str | torch.device = "auto", precision: str | None = None) -> "GenerativeModel":
        """Move the networks to `device` ('auto', 'cpu', 'cuda', 'cuda:N'); `precision` 'fp32',
        'bf16' or 'fp16' (CUDA only) for sampling. The averaged weights stay on the CPU in fp32
        and are copied in by the inference context."""
        dev = resolve_device(device)
        for net in self.nets.values():
            net.to(dev)
        if precision is not None:
            self.precision = check_precision(precision, dev)
        elif self.precision == "fp16" and dev.type != "cuda":
            self.precision = "fp32"
        return self

    # ---- public API ---------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, ds: Dataset, preprocess: PreprocessConfig | None = None, max_len: int = MAX_LEN,
                     score_name: str = "TS", **hparams) -> tuple["GenerativeModel", TrainArrays]:
        spec, arrays = prepare_data(ds, preprocess or PreprocessConfig(), max_len, score_name,
                                    text_encoder=hparams.get("text_encoder", ""), augment=hparams.get("augment", ""))
        return cls(spec, **hparams), arrays

    def fit(self, ds: Dataset | TrainArrays, steps: int = 1000, seed: int = 0, out_dir: str | Path | None = None,
            **train_kwargs) -> "GenerativeModel":
        arrays = ds if isinstance(ds, TrainArrays) else self.arrays(ds)
        train(self, arrays, steps=steps, seed=seed, out_dir=out_dir, **train_kwargs)
        return self

    def arrays(self, ds: Dataset, augment: str | None = None) -> TrainArrays:
        """`ds` as this model's training arrays (its preprocessing, normaliser and text encoder);
        `augment` None: the model's own training copies."""
        return prepare_data(ds, self.spec.preprocess, self.spec.max_len, self.spec.score_name, self.spec.normalizer,
                            self.spec.text_encoder, augment=self.hparams["augment"] if augment is None else augment)[1]

    def sampler_settings(self, options: SamplerOptions | None = None) -> dict:
        """What sampling with `options` uses: each option given, else the model's own (None there:
        the model has none of its own, e.g. score guidance = guidance)."""
        given = (options or SamplerOptions()).given()
        return {k: given.get(k, self.hparams.get(k)) for k in self.capabilities.options}

    @classmethod
    def study_scores(cls) -> str:
        """The downstream study's scores by default (a class method: a benchmark asks before loading)."""
        return cls.study_defaults.get("scores", "matched")

    def study_settings(self) -> tuple[str, dict]:
        """(scores, sampler options) of the downstream study's generated data by default."""
        return self.study_scores(), {k: v for k, v in self.study_defaults.items() if k != "scores"}

    @classmethod
    def check_options(cls, options: SamplerOptions | None) -> SamplerOptions:
        """The options, or an error naming those this family doesn't have (a class method: the
        CLI checks before loading anything)."""
        options = options or SamplerOptions()
        bad = sorted(set(options.given()) - set(cls.capabilities.options))
        if bad:
            raise ModelError(f"the {cls.family} family has no sampler option(s) {bad}; it takes "
                             f"{list(cls.capabilities.options) or 'none'}")
        return options

    def exercise_index(self, exercise, n: int) -> torch.Tensor:
        """Exercise name(s) -> (n,) label indices; a clear error for an unknown name."""
        names = [exercise] * n if isinstance(exercise, str) else list(exercise)
        if len(names) != n:
            raise ModelError(f"got {len(names)} exercises for n={n} samples")
        unknown = [e for e in names if e not in self.spec.exercises]
        if unknown:
            raise ModelError(f"unknown exercise {unknown[0]!r}; this model knows {list(self.spec.exercises)}")
        return torch.tensor([self.spec.exercises.index(e) for e in names], dtype=torch.long)

    def unit_scores(self, score, n: int) -> torch.Tensor:
        """Scores (scalar or (n,), None/NaN = unknown) -> unit scores (n,); out of range is an error."""
        sc = np.broadcast_to(np.asarray(np.nan if score is None else score, np.float32), (n,)).copy()
        lo, hi = self.spec.normalizer.score_lo, self.spec.normalizer.score_hi
        bad = np.isfinite(sc) & ((sc < lo - 1e-6) | (sc > hi + 1e-6))
        if bad.any():
            raise ModelError(f"score {sc[bad][0]:g} outside the {self.spec.score_name} range [{lo:g}, {hi:g}]")
        return torch.from_numpy(self.spec.normalizer.score_to_unit(sc))

    def check_length(self, length: int) -> int:
        if not 2 <= length <= self.spec.max_len:
            raise ModelError(f"length {length} outside [2, {self.spec.max_len}] frames (at {self.spec.fps:g} fps)")
        return int(length)

    def sample(self, exercise: str | list[str], score: float | np.ndarray | None = None, length: int | None = None,
               n: int = 1, seed: int = 0, batch_size: int = 64, options: SamplerOptions | None = None) -> np.ndarray:
        """Positions (n, T, J, 3) in metres. score None = unconditional on score."""
        ex, sc = self.exercise_index(exercise, n), self.unit_scores(score, n)
        options = self.check_options(options)
        name = exercise if isinstance(exercise, str) else list(exercise)[0]
        length = self.check_length(self.spec.default_length[name] if length is None else length)
        gen = torch.Generator().manual_seed(int(seed))  # on the CPU: the same noise on every device
        ex, sc = ex.to(self.device), sc.to(self.device)
        out = []
        with self.inference():
            for i in range(0, n, batch_size):
                z = self.generate(ex[i:i + batch_size], sc[i:i + batch_size], length, gen, options)
                out.append(z.float().cpu().numpy())
        return self.spec.normalizer.decode(np.concatenate(out))

    # ---- text (models trained with a sentence encoder) -------------------------------------------
    def sample_text(self, text: str | list[str], n: int = 1, length: int | None = None, seed: int = 0,
                    exercise: str | None = None, score: float | None = None,
                    options: SamplerOptions | None = None) -> np.ndarray:
        """Positions (n, T, J, 3) from a free-text description (labels optional, usually left free)."""
        texts = [text] * n if isinstance(text, str) else list(text)
        if len(texts) != n:
            raise ModelError(f"got {len(texts)} texts for n={n} samples")
        emb, sc = self.text_conditions(texts, score)
        if exercise is None:
            ex = torch.full((n,), len(self.spec.exercises), dtype=torch.long)  # the null label
        else:
            ex = self.exercise_index(exercise, n)
        options = self.check_options(options)
        length = self.check_length(length or int(np.median(list(self.spec.default_length.values()))))
        gen = torch.Generator().manual_seed(int(seed))
        dev = self.device
        with self.inference():
            z = self.generate(ex.to(dev), sc.to(dev), length, gen, options, text=emb.to(dev))
        return self.spec.normalizer.decode(z.float().cpu().numpy())

    def text_conditions(self, texts: list[str], score: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (embeddings of the words other than the quality (n, D_text), unit scores (n,)):
        the quality the text states, or `score` when given."""
        if not self.spec.text_encoder:
            raise ModelError(f"this {self.family} model was trained without text; train it with `--text`")
        _, stated, rest = self.read_text(texts)
        emb = torch.from_numpy(embed(self.spec.text_encoder, rest))
        return emb, torch.from_numpy(stated) if score is None else self.unit_scores(score, len(texts))

    def read_text(self, texts: list[str]) -> tuple[list[str | None], np.ndarray, list[str]]:
        """(band per text or None, the unit score it stands for or NaN, texts without their quality)."""
        return read_quality(self.spec.text_reader, texts)

    def body(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised (..., J*3) -> normalised body (..., J, 3), differentiable (geometric losses)."""
        n = self.spec.normalizer
        x = z * torch.as_tensor(n.std, device=z.device) + torch.as_tensor(n.mean, device=z.device)
        return x.reshape(*z.shape[:-1], -1, 3)

    def n_parameters(self) -> int:
        return sum(p.numel() for net in self.nets.values() for p in net.parameters())

    # ---- persistence: safetensors weights + JSON metadata --------------------------------------
    def metadata(self) -> dict:
        return {"family": self.family, "hparams": self.hparams, "step": self.step, "spec": self.spec.to_dict()}

    def save(self, path: str | Path) -> Path:
        """Write `model.safetensors` + `model.json` into the folder `path`, atomically."""
        tensors = {f"{k}.{n}": t for k, net in self.nets.items() for n, t in net.state_dict().items()}
        tensors.update({f"ema.{k}.{n}": t for k, sd in self.ema.items() for n, t in sd.items()})
        return write_model_dir(path, tensors, self.metadata())

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> "GenerativeModel":
        """A model in eval mode on `device` (training puts it back in train mode itself)."""
        meta, tensors = read_checkpoint(path)
        family = get_family(meta["family"]) if cls is GenerativeModel else cls
        if family.family != meta["family"]:
            raise ModelError(f"{path}: holds a {meta['family']!r} model, not {family.family!r}")
        model = family(DataSpec.from_dict(meta["spec"]), **{**family.absent_before, **meta["hparams"]})
        model.load_tensors(tensors, source=str(path))
        model.step = int(meta.get("step", 0))
        for net in model.nets.values():
            net.eval()
        return model.to(device, precision)

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: str = "") -> None:
        self.ema = {}
        for k in self.nets:
            e = {n[len(k) + 5:]: t.float().clone() for n, t in tensors.items() if n.startswith(f"ema.{k}.")}
            if e:
                self.ema[k] = e
        for k, net in self.nets.items():
            sd = {n[len(k) + 1:]: t for n, t in tensors.items() if n.startswith(k + ".")}
            try:
                net.load_state_dict(sd, strict=True)
            except RuntimeError as e:
                raise ModelError(f"{source}: weights don't fit the {self.family} network '{k}' ({str(e)[:200]})") from None
