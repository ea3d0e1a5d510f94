"""MkDocs hook: the command-line page shows the real ``--help`` of every command and the
supported-layers table from the rule registry, generated at build time so they cannot drift."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _help(args: list[str]) -> str:
    from maxaffine import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main([*args, "--help"])
    return out.getvalue().rstrip()


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != "cli.md":
        return markdown
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from maxaffine import cli
    from maxaffine.layers import layer_table

    # every subcommand the parser has, so a new one appears without editing the page
    subcommands = next(a for a in cli._parser()._actions if a.dest == "command").choices
    commands = [[], *([name] for name in subcommands)]

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal; the page has one width
    try:
        helps = [f"### `maxaffine {' '.join(a + ['--help'])}`\n\n```text\n{_help(a)}\n```\n"
                 for a in commands]
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return (markdown.replace("<!-- cli-help -->", "\n".join(helps))
            .replace("<!-- layer-table -->", layer_table()))
