"""SEFT: alignment of LLMs by self-evolution, on one machine or on Kubernetes."""

__version__ = "0.1.0"
