"""The documentation site builds with no warnings and its API reference covers the public API.

The expected names come from the package itself (``maxaffine.__all__`` and the ``__all__`` of
every public submodule), so a name added to the API without a reference entry fails here.
"""

from __future__ import annotations

import ast
import html
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

import maxaffine

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs", reason="the docs tooling is not installed (pip install '.[docs]')")
pytest.importorskip("material", reason="mkdocs-material is not installed (pip install '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python",
                    reason="mkdocstrings-python is not installed (pip install '.[docs]')")


def _build(out: Path) -> str:
    # not --quiet: it hides warnings from the strict mode's count too
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(out)], check=False, capture_output=True, text=True, cwd=ROOT, env=env,
        timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    return log


def _anchors(site: Path) -> set[str]:
    ids: set[str] = set()
    for page in (site / "reference").glob("*.html"):
        ids |= set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))
    return ids


def _public_modules() -> list[str]:
    """Submodules named in ``__all__``, and those a same-named function in it shadows."""
    return sorted(n for n in maxaffine.__all__
                  if importlib.util.find_spec(f"maxaffine.{n}") is not None)


def _module_names(module: types.ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    # no __all__: the public names the module defines itself (what the reference shows)
    return [n for n, v in vars(module).items() if not n.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
            and not isinstance(v, types.ModuleType)]


def test_site_builds_without_warnings_and_covers_the_api(tmp_path):
    """One build (the slow part), then every check on what it wrote."""
    site = tmp_path / "site"
    log = _build(site)
    assert "WARNING" not in log, log
    for page in ("index.html", "getting-started.html", "gallery.html", "cli.html",
                 "experiments.html", "reference/index.html", "search/search_index.js"):
        assert (site / page).is_file(), page
    _check_every_public_name_has_an_anchor(site)
    _check_gallery_shows_every_example(site)
    _check_docstrings_rendered(site)
    _check_command_line_page(site)
    _check_offline(site)
    if shutil.which("chromium"):  # .ci/run installs it; without it the rest still runs
        _check_search_from_disk(site, tmp_path)


def _check_command_line_page(site: Path) -> None:
    """The page carries every subcommand's real help and the registry's layer table."""
    from maxaffine import cli

    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "cli.html").read_text(encoding="utf-8")))
    commands = next(a for a in cli._parser()._actions if a.dest == "command").choices
    for name in commands:
        assert f"usage: maxaffine {name}" in page, name
    assert "nn.Conv2d" in page and "nn.LeakyReLU" in page


def _check_docstrings_rendered(site: Path) -> None:
    """No reStructuredText is left in the reference (math, roles, citations are rewritten)."""
    pages = {p.name: p.read_text(encoding="utf-8") for p in (site / "reference").glob("*.html")}
    for name, page in pages.items():
        text = html.unescape(re.sub(r"<[^>]+>", "", page))
        leftover = re.search(r"\.\. math::|\.\. \[|:(?:func|class|meth|mod|attr|data|exc|obj|math):`",
                             text)
        assert leftover is None, f"{leftover.group(0)!r} left in reference/{name}"
        # a line of a docstring that starts with ">" (a wrapped ">=", a bare doctest) would be
        # read as a quote
        assert "<blockquote" not in page, f"a docstring line is read as a quote in {name}"
    if importlib.util.find_spec("latex2mathml") is not None:
        assert "<math" in pages["power.html"]


def _check_search_from_disk(site: Path, tmp_path: Path) -> None:
    """The search finds a function with the site opened from disk and no network."""
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
         (site / "index.html").as_uri() + "?q=partition_slice"],
        check=False, capture_output=True, text=True, timeout=120)
    found = re.search(r'md-search-result__meta">(\d+) matching document', proc.stdout)
    assert found and int(found.group(1)) > 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _check_offline(site: Path) -> None:
    """Opened from disk with no network: nothing is loaded from elsewhere."""
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:script|link|img|iframe)\b[^>]*(?:src|href)="(?:https?:)?//[^"]*',
                            text)
        assert not remote, f"{page.relative_to(site)} loads {remote[:3]}"


def _check_every_public_name_has_an_anchor(site: Path) -> None:
    ids = _anchors(site)
    missing = []
    modules = _public_modules()
    for mod_name in modules:
        module = sys.modules.get(f"maxaffine.{mod_name}") or importlib.import_module(
            f"maxaffine.{mod_name}")
        if f"maxaffine.{mod_name}" not in ids:
            missing.append(f"maxaffine.{mod_name}")
        missing += [f"maxaffine.{mod_name}.{n}" for n in _module_names(module)
                    if f"maxaffine.{mod_name}.{n}" not in ids]
    for name in maxaffine.__all__:
        with warnings.catch_warnings():  # deprecated aliases warn on access
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = getattr(maxaffine, name)
            if isinstance(obj, types.ModuleType):
                continue
            # documented where a public submodule exports the same object
            homes = [m for m in modules
                     if getattr(sys.modules[f"maxaffine.{m}"], name, None) is obj]
        # an alias (a deprecated former name) is documented under the object's own name
        names = {name, getattr(obj, "__name__", name)}
        anchors = {f"maxaffine.{m}.{n}" for m in homes for n in names}
        if getattr(obj, "__module__", None) == "maxaffine":  # defined in the package itself
            anchors |= {f"maxaffine.{n}" for n in names}
        if not anchors & ids:
            missing.append(f"maxaffine.{name} (exported by {homes or 'no public submodule'})")
    assert not missing, ("public names missing from the API reference (a public name needs a "
                         "docstring, and a new module a `::: maxaffine.NAME` line in a page of "
                         "docs/reference/):\n" + "\n".join(missing))


def test_the_reference_has_a_page_for_every_public_module():
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    directives = set(re.findall(r"^::: (maxaffine[\w.]*)", pages, flags=re.MULTILINE))
    missing = {f"maxaffine.{m}" for m in _public_modules()} - directives
    assert not missing, f"add `::: NAME` for {sorted(missing)} to a page of docs/reference/"


def _check_gallery_shows_every_example(site: Path) -> None:
    gallery = (site / "gallery.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", gallery))
    examples = sorted((ROOT / "examples").glob("*.py"))
    assert examples
    for example in examples:
        doc = ast.get_docstring(ast.parse(example.read_text()))
        assert doc, f"{example.name} needs a docstring: the gallery shows it"
        summary = re.sub(r"`+", "", doc.splitlines()[0])
        assert summary in text, example.name
        assert f"Source of examples/{example.name}" in text, example.name
    for figure in re.findall(r'src="(figures/[^"]+)"', gallery):
        assert (site / figure).is_file(), figure


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _pages_with_code() -> list[str]:
    return sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")
                  if _python_blocks(p.read_text(encoding="utf-8")))


def test_getting_started_is_among_the_pages_with_code():
    assert "getting-started.md" in _pages_with_code()


@pytest.mark.parametrize("page", _pages_with_code())
def test_page_code_runs(page, tmp_path, monkeypatch):
    """Each page's ```python blocks are one program: they run in order in a fresh directory
    (as the README's do). A sketch that is not meant to run is fenced ```py instead."""
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    code = "\n".join(_python_blocks((ROOT / "docs" / page).read_text(encoding="utf-8")))
    exec(compile(code, f"docs/{page}", "exec"), {"__name__": "__docs__"})  # noqa: S102
    if page == "getting-started.md":  # the files the page says it writes
        for name in ("partition.png", "my_model.py", "my_model.pt", "my-report/index.html"):
            assert (tmp_path / name).is_file(), name
