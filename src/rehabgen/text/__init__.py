"""Text: the exercise corpus, frozen sentence encoders, and the text-motion retrieval evaluator."""

from rehabgen.text.corpus import describe
from rehabgen.text.encoder import TextEncoder, TextEncoderError, get_encoder

__all__ = ["describe", "TextEncoder", "TextEncoderError", "get_encoder"]
