"""Taking a tuned model home: the adapter, a merged Hugging Face folder, a GGUF file, an Ollama model.

`runner.export_run` does one export; GGUF and Ollama exports end with a parity check against the app.
"""

from .runner import FORMATS, ExportRequest, ExportResult, default_out, export_run

__all__ = ["FORMATS", "ExportRequest", "ExportResult", "default_out", "export_run"]
