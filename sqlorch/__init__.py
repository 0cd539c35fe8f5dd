"""sqlorch: plain SQL models, built incrementally and exactly."""

__version__ = "0.1.0"
