"""MkDocs hook: the gallery page lists every script in ``examples/`` from its own docstring,
so an example added to the folder appears without editing the page."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

MARKER = "<!-- examples -->"


def _entry(script: Path, figures: Path) -> str:
    source = script.read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    title, _, body = doc.partition("\n")
    parts = [f"## `{script.name}`", "", title.strip(), "", textwrap.dedent(body).strip("\n"), ""]
    if f"examples/{script.name}" not in doc:
        parts += [f"Run it with `python examples/{script.name}`.", ""]
    for name in dict.fromkeys(re.findall(r"([\w-]+\.png)", doc)):
        if (figures / name).is_file():
            parts += [f"![{name}](figures/{name})", ""]
    parts += [f'??? example "Source of examples/{script.name}"', "",
              textwrap.indent(f"```python\n{source.rstrip()}\n```", "    "), ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != "gallery.md":
        return markdown
    root = Path(config["config_file_path"]).parent
    scripts = sorted((root / "examples").glob("*.py"))
    entries = "\n".join(_entry(s, Path(config["docs_dir"]) / "figures") for s in scripts)
    return markdown.replace(MARKER, entries)
