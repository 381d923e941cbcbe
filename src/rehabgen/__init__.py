"""rehabgen: generative models of rehabilitation motion."""
__version__ = "0.1.0"
