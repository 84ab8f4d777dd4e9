"""The Gradio interface: one module per tab, all calling the package and one shared manager."""

from .app import build_app

__all__ = ["build_app"]
