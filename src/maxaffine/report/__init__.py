"""HTML reports: the demo's and a user model's geometry in one self-contained page.

``maxaffine demo`` and ``maxaffine report`` build on :class:`Report`, which collects
captioned figures (inlined as base64), tables (also written as CSV) and numbers (JSON),
and writes them atomically.
"""

from __future__ import annotations

from .html import Figure, Report, Table, figure_bytes

__all__ = ["Figure", "Report", "Table", "figure_bytes"]
