"""A self-contained HTML report: sections, captioned figures (inlined base64), tables, numbers.

Everything is kept in memory until :meth:`Report.write`, which stages the finished files
beside the destination and switches them into place in one step, so a failing analysis
never leaves a half-written report behind and no file maxaffine did not write is touched.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;
color:#1d1d1f;background:#fafafa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:1.2em 1.5em 4em}
h1{font-size:1.7em;margin:.4em 0 .1em}h2{font-size:1.3em;margin:1.8em 0 .3em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
p.lead{color:#444;margin-top:.2em}
nav{font-size:.92em;margin:.6em 0 1em}nav a{margin-right:1em;color:#0b5cad}
figure{margin:1em 0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.6em}
figure img{display:block;max-width:100%;height:auto;margin:0 auto}
figcaption{font-size:.92em;color:#333;margin-top:.4em}figcaption b{color:#000}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0;background:#fff}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
code{background:#eee;padding:0 .25em;border-radius:3px}
.note{font-size:.9em;color:#555}
"""


@dataclass(frozen=True)
class Figure:
    """One encoded picture of the report.

    Attributes
    ----------
    name : str
        File stem (``figures/<name>.<ext>`` beside the report) and HTML anchor.
    title, caption : str
        Shown under the picture; the caption explains it in the theory's terms.
    data : bytes
        Encoded image.
    mime : str
        ``"image/png"`` or ``"image/gif"``.
    """

    name: str
    title: str
    caption: str
    data: bytes
    mime: str = "image/png"

    @property
    def extension(self) -> str:
        return self.mime.split("/")[-1]


@dataclass(frozen=True)
class Table:
    """A table written as CSV beside the report and shown in the HTML."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""
    show: bool = True


def figure_bytes(fig: Any, *, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Report:
    """An HTML report under construction.

    Parameters
    ----------
    title : str
    lead : str
        One paragraph under the title.
    """

    title: str
    lead: str = ""
    _blocks: list[tuple[str, Any]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str, text: str = "") -> None:
        """Start a section (an ``<h2>`` with an anchor) with an optional paragraph."""
        self._blocks.append(("section", (title, text)))

    def paragraph(self, text: str, *, note: bool = False) -> None:
        """A paragraph of plain text (escaped); ``note=True`` renders it small and grey."""
        self._blocks.append(("note" if note else "p", text))

    def figure(self, image: Any, name: str, title: str, caption: str, *,
               mime: str = "image/png", dpi: int = 110) -> Figure:
        """Add a picture: a matplotlib figure (encoded as PNG and closed) or encoded bytes."""
        if any(f.name == name for f in self.figures):
            raise ValueError(f"duplicate figure name {name!r}")
        data = image if isinstance(image, (bytes, bytearray)) else figure_bytes(image, dpi=dpi)
        fig = Figure(name, title, caption, bytes(data), mime)
        self.figures.append(fig)
        self._blocks.append(("figure", fig))
        return fig

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
              caption: str = "", show: bool = True) -> Table:
        """Add a table (written to ``<name>.csv``; shown in the HTML unless ``show=False``)."""
        table = Table(name, tuple(columns), tuple(tuple(r) for r in rows), caption, show)
        self.tables.append(table)
        if show:
            self._blocks.append(("table", table))
        return table

    def component(self, markup: str, title: str, caption: str) -> None:
        """Add a self-contained interactive component (trusted HTML written by maxaffine, such
        as :func:`maxaffine.view.partition_html`), captioned like a figure."""
        self._blocks.append(("component", (markup, title, caption)))

    def record(self, key: str, value: Any) -> None:
        """Store a number (or nested dict/list of numbers) for ``numbers.json``."""
        self.numbers[key] = _jsonable(value)

    # -- rendering -------------------------------------------------------------------
    def render(self) -> str:
        """The complete HTML document (every image inlined as a base64 data URI)."""
        esc = html.escape
        sections = [(i, b[1][0]) for i, b in enumerate(self._blocks) if b[0] == "section"]
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               '<meta name="viewport" content="width=device-width, initial-scale=1">',
               f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body><main>",
               f"<h1>{esc(self.title)}</h1>"]
        if self.lead:
            out.append(f'<p class="lead">{esc(self.lead)}</p>')
        if sections:
            links = "".join(f'<a href="#s{i}">{esc(t)}</a>' for i, t in sections)
            out.append(f"<nav>{links}</nav>")
        for i, (kind, payload) in enumerate(self._blocks):
            if kind == "section":
                title, text = payload
                out.append(f'<h2 id="s{i}">{esc(title)}</h2>')
                if text:
                    out.append(f"<p>{esc(text)}</p>")
            elif kind == "p":
                out.append(f"<p>{esc(payload)}</p>")
            elif kind == "note":
                out.append(f'<p class="note">{esc(payload)}</p>')
            elif kind == "figure":
                f: Figure = payload
                uri = f"data:{f.mime};base64,{base64.b64encode(f.data).decode('ascii')}"
                out.append(f'<figure id="{esc(f.name)}"><img src="{uri}" alt="{esc(f.title)}">'
                           f"<figcaption><b>{esc(f.title)}.</b> {esc(f.caption)}</figcaption>"
                           "</figure>")
            elif kind == "component":
                markup, title, caption = payload
                out.append(f'<figure class="component">{markup}<figcaption><b>{esc(title)}.'
                           f"</b> {esc(caption)}</figcaption></figure>")
            elif kind == "table":
                t: Table = payload
                head = "".join(f"<th>{esc(c)}</th>" for c in t.columns)
                body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row)
                               + "</tr>" for row in t.rows)
                cap = f"<caption>{esc(t.caption)}</caption>" if t.caption else ""
                out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}"
                           "</tbody></table>")
        files = ", ".join([f"{t.name}.csv" for t in self.tables] + ["numbers.json"])
        out.append(f'<p class="note">Numbers beside this file: {esc(files)}; pictures in '
                   "figures/.</p></main></body></html>")
        return "\n".join(out)

    def files(self) -> dict[str, bytes]:
        """Every file of the report, as ``{relative path: bytes}`` (what :meth:`write` writes).

        ``index.html``, ``numbers.json``, one ``<table>.csv`` per table and
        ``figures/<name>.<ext>`` per figure; the manifest is added by :meth:`write`.
        """
        out: dict[str, bytes] = {}
        for f in self.figures:
            out[f"figures/{f.name}.{f.extension}"] = f.data
        for t in self.tables:
            buffer = io.StringIO(newline="")
            writer = csv.writer(buffer)
            writer.writerow(t.columns)
            writer.writerows(t.rows)
            out[f"{t.name}.csv"] = buffer.getvalue().encode("utf-8")
        out["numbers.json"] = (json.dumps(self.numbers, indent=2) + "\n").encode("utf-8")
        out["index.html"] = self.render().encode("utf-8")
        return out

    def write(self, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``index.html``, ``numbers.json``, the CSV tables and ``figures/`` atomically.

        The folder gets a manifest (``maxaffine-manifest.json``: every file with its SHA-256).
        A new or empty folder is filled; a previous maxaffine report is replaced only with
        ``overwrite=True`` and only if it holds nothing maxaffine did not write; any other
        non-empty folder is refused. The switch from the old report to the new one is a single
        rename, so an error or Ctrl-C leaves either the old report or the new one, never a mix
        (rules in :mod:`maxaffine.report.output`).

        Parameters
        ----------
        out_dir : path
        overwrite : bool
            Replace a previous maxaffine report in ``out_dir``.

        Returns
        -------
        Path
            The path of ``index.html``.

        Raises
        ------
        InputError
            The folder is refused or cannot be written; the message names it and the fix.
        """
        from .output import write_files

        write_files(out_dir, self.files(), overwrite=overwrite)
        return Path(out_dir) / "index.html"


__all__ = ["Figure", "Report", "Table", "figure_bytes"]
