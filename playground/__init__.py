"""Instruction-tuning playground: data, prompt styles, batching, models, training and judging."""

__version__ = "0.1.0"
