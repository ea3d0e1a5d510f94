"""HTML reports: the demo's and a user model's geometry in one self-contained page.

``maxaffine demo`` and ``maxaffine report`` build on :class:`Report`, which collects
captioned figures (inlined as base64), tables (also written as CSV) and numbers (JSON),
and writes them atomically.
"""

from __future__ import annotations

from .html import Figure, Report, Table, figure_bytes
from .user import Data, build_model_report, load_data, load_factory, load_weights

__all__ = ["Data", "Figure", "Report", "Table", "build_model_report", "figure_bytes",
           "load_data", "load_factory", "load_weights"]
