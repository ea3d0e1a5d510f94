"""HTML reports: the demo's and a user model's geometry in one self-contained page.

``maxaffine demo`` and ``maxaffine report`` build on :class:`Report`, which collects
captioned figures (inlined as base64), tables (also written as CSV) and numbers (JSON),
and writes them atomically into a folder with a manifest (:mod:`maxaffine.report.output`).
"""

from __future__ import annotations

from .demo_report import run_demo
from .html import Figure, Report, Table, figure_bytes
from .output import check_destination
from .user import Data, build_model_report, load_data, load_factory, load_weights

__all__ = ["Data", "Figure", "Report", "Table", "build_model_report",
           "check_destination", "figure_bytes", "load_data", "load_factory", "load_weights",
           "run_demo"]
