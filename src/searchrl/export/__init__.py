"""`searchrl export`: a run's policy as a standard Hugging Face folder (merged weights or a PEFT adapter),
with a model card and the protocol the agent needs (``folder``: the weights; ``card``: what is written
beside them)."""

from searchrl.export.folder import ExportError, ExportResult, export_run, merged_start

__all__ = ["ExportError", "ExportResult", "export_run", "merged_start"]
