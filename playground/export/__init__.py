"""Taking a tuned model home: the adapter, a merged Hugging Face folder, a GGUF file, an Ollama model.

`runner.export_run` does one export; each format is one `formats.ExportFormat` in `FORMATS`. GGUF and
Ollama exports end with a parity check against the app.
"""

from .formats import FORMATS, ExportFormat, register_format
from .runner import ExportRequest, ExportResult, default_out, export_run

__all__ = ["FORMATS", "ExportFormat", "ExportRequest", "ExportResult", "default_out", "export_run", "register_format"]
