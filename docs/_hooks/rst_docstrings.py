"""Griffe extension: the package's numpydoc docstrings use reStructuredText constructs that
mkdocstrings (which renders Markdown) would print verbatim or mangle; rewrite them once,
after the package is loaded and before any docstring is parsed.

- ``.. math::`` blocks and ``:math:`` roles become MathML (rendered by the browser itself, so
  the site needs no script and no network); without ``latex2mathml`` the LaTeX source is shown
  as code.
- ``:func:``, ``:class:``, ``:meth:``... roles become cross-references to the object's entry in
  the API reference, resolved in the docstring's own scope; a ``maxaffine`` name that resolves
  to nothing documented is a warning (so the strict build fails on a stale reference), other
  targets (torch, matplotlib) stay code.
- ``.. [1] ...`` citations become a list.
"""

from __future__ import annotations

import html
import importlib
import logging
import re
import sys
from pathlib import Path

import griffe

try:
    from latex2mathml.converter import convert as _to_mathml
except ImportError:  # the docs extra is not installed: LaTeX source instead
    _to_mathml = None

# under "mkdocs." so that `mkdocs build --strict` counts these warnings
log = logging.getLogger("mkdocs.plugins.maxaffine_docstrings")

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
SRC = Path(__file__).resolve().parents[2] / "src"
_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|attr|data|exc|obj|math):`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::(.*)$")
_CITATION = re.compile(r"^(\s*)\.\. \[(\w+)\]\s*(.*)$")
# characters Markdown would read as syntax inside the generated HTML text
_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|~<>&")


def _encode(text: str) -> str:
    return "".join(f"&#{ord(c)};" if c in _MARKDOWN_SPECIAL else c for c in html.unescape(text))


def _protect(text: str) -> str:
    """Entity-encode the text between tags so that Markdown leaves the HTML alone."""
    return re.sub(r">([^<]+)<", lambda m: ">" + _encode(m.group(1)) + "<", text)


def _math(latex: str, *, block: bool) -> str:
    latex = " ".join(latex.split())
    # commands latex2mathml does not know, in terms of ones it does
    latex = re.sub(r"\\arg\s*\\(max|min)", r"\\operatorname{arg\\,\1}", latex)
    if _to_mathml is not None:
        try:
            out = _to_mathml(latex, display="block" if block else "inline")
        except Exception as err:  # noqa: BLE001 - any parse failure: keep the source
            # not a warning: the strict build must not depend on whether the optional
            # converter is installed
            log.info("maxaffine docs: math %r shown as LaTeX (%s)", latex, err)
        else:
            out = _protect(out)
            # Markdown takes a line that starts with <math> for an HTML block: wrap inline math
            return f'<div class="math-block">{out}</div>' if block else f"<span>{out}</span>"
    code = f"<code>{_encode(latex)}</code>"
    return f'<pre class="math-block">{code}</pre>' if block else code


def _convert_math_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = len(match.group(1))
        body = [match.group(2).strip()]
        i += 1
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i].strip())
            i += 1
        # a blank line that ends the block belongs to the text after it
        while body and not body[-1]:
            body.pop()
            i -= 1
        out += ["", " " * indent + _math(" ".join(b for b in body if b), block=True), ""]
    return out


def _convert_citations(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _CITATION.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = len(match.group(1))
        text = [match.group(3).strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and not _CITATION.match(lines[i]) and \
                len(lines[i]) - len(lines[i].lstrip()) > indent:
            text.append(lines[i].strip())
            i += 1
        out.append(" " * indent + f"- [{match.group(2)}] " + " ".join(text))
    return out


_BORDER = re.compile(r"^(\s*)=+(?:\s+=+)+\s*$")


def _convert_simple_tables(lines: list[str]) -> list[str]:
    """reStructuredText simple tables (``===  ===`` borders) -> Markdown tables."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        border = _BORDER.match(lines[i])
        if not border:
            out.append(lines[i])
            i += 1
            continue
        spans = [m.span() for m in re.finditer(r"=+", lines[i])]
        rows: list[list[str]] = []
        borders = 1
        i += 1
        while i < len(lines) and borders < 3:
            line = lines[i]
            i += 1
            if _BORDER.match(line):
                borders += 1
                continue
            cells = [line[a:b if k + 1 < len(spans) else None].strip()
                     for k, (a, b) in enumerate(spans)]
            if rows and not cells[0] and borders == 2:  # a continuation line
                rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells)]
            else:
                rows.append(cells)
        indent = border.group(1)
        out += ["", *(indent + "| " + " | ".join(r) + " |" for r in rows[:1]),
                indent + "|" + "---|" * len(spans),
                *(indent + "| " + " | ".join(r) + " |" for r in rows[1:]), ""]
    return out


def _fence_doctests(lines: list[str]) -> list[str]:
    """Doctest blocks outside an Examples section (where griffe finds them itself) would be
    read as Markdown quotes: fence them as console sessions."""
    out: list[str] = []
    in_examples = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]) and line.strip():
            in_examples = line.strip() == "Examples"
        if in_examples or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i][len(indent):])
            i += 1
        out += ["", f"{indent}```pycon", *(indent + b for b in block), f"{indent}```", ""]
    return out


class RstDocstrings(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != "maxaffine":
            return
        self.root = pkg
        self.documented = self._documented_paths(pkg)
        self.exports = self._top_level_exports()
        for obj in self._walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self.convert(obj.docstring.value, obj)

    @staticmethod
    def _top_level_exports() -> dict[str, str]:
        """``maxaffine.NAME`` -> canonical path. The package binds most names on first use,
        which static analysis cannot see, so ask the package (the same sources griffe reads)."""
        if str(SRC) not in sys.path:
            sys.path.insert(0, str(SRC))
        package = importlib.import_module("maxaffine")
        out = {}
        for name in package.__all__:
            value = getattr(package, name)
            module = getattr(value, "__module__", None)
            if isinstance(value, type(package)):
                out[f"maxaffine.{name}"] = value.__name__
            elif module and hasattr(value, "__qualname__"):
                out[f"maxaffine.{name}"] = f"{module}.{value.__qualname__}"
        return out

    # --- where each object is documented -------------------------------------------------
    def _documented_paths(self, pkg: griffe.Module) -> dict[str, str]:
        """Canonical path of every object the reference renders -> the path of its anchor."""
        pages = "\n".join(p.read_text() for p in REFERENCE.glob("*.md"))
        modules = re.findall(r"^::: (maxaffine[\w.]*)", pages, flags=re.MULTILINE)
        found: dict[str, str] = {}

        def add(obj, path: str) -> None:
            target = obj.final_target if obj.is_alias else obj
            found.setdefault(target.path, path)
            if target.is_class:
                for name, member in target.all_members.items():
                    if not name.startswith("_") and member.docstring is not None:
                        add(member, f"{path}.{name}")

        for module_path in modules:
            module = pkg if module_path == "maxaffine" else pkg[module_path[len("maxaffine."):]]
            found.setdefault(module.path, module.path)
            if module_path == "maxaffine":
                continue
            for name, member in module.members.items():
                try:
                    public = member.is_public and member.docstring is not None
                except griffe.AliasResolutionError:
                    continue
                if public and not member.is_module:
                    add(member, f"{module.path}.{name}")
        return found

    def _walk(self, obj):
        yield obj
        for member in obj.members.values():
            if member.is_alias:
                continue
            if member.is_module and not member.path.startswith("maxaffine"):
                continue
            yield from self._walk(member)

    def _lookup(self, path: str):
        if not path.startswith("maxaffine"):
            return None
        try:
            obj = self.root if path == "maxaffine" else self.root[path[len("maxaffine."):]]
            return obj.final_target if obj.is_alias else obj
        except (KeyError, griffe.AliasResolutionError, ValueError):
            return None

    def _canonical(self, path: str) -> str:
        """``maxaffine.Partition.upto`` -> ``maxaffine.partition.partition.Partition.upto``."""
        head, _, rest = path.partition(".")
        name, _, rest = rest.partition(".")
        canonical = self.exports.get(f"{head}.{name}")
        if canonical is None:
            return path
        return f"{canonical}.{rest}" if rest else canonical

    def resolve(self, name: str, scope) -> str | None:
        """The anchor of ``name`` as a docstring of ``scope`` means it, or None."""
        first, _, rest = name.partition(".")
        candidates = []
        holder = scope  # the innermost scope first: a method's sibling before a package name
        while holder is not None:
            candidates.append(f"{holder.path}.{name}")
            holder = holder.parent
        try:
            candidates.append(scope.resolve(first) + (f".{rest}" if rest else ""))
        except (griffe.NameResolutionError, AttributeError):
            pass
        candidates += [self._canonical(c) for c in (f"maxaffine.{name}", name)]
        for candidate in candidates:
            target = self._lookup(candidate)
            if target is not None and target.path in self.documented:
                return self.documented[target.path]
        return None

    # --- the rewrite ----------------------------------------------------------------------
    def convert(self, text: str, obj) -> str:
        lines = _convert_math_blocks(text.splitlines())
        lines = _convert_citations(lines)
        lines = _fence_doctests(lines)
        lines = _convert_simple_tables(lines)
        return _ROLE.sub(lambda m: self._role(m.group(1), m.group(2), obj), "\n".join(lines))

    def _role(self, kind: str, content: str, obj) -> str:
        if kind == "math":
            return _math(content, block=False)
        title, target = content, content
        explicit = re.match(r"^(.*?)\s*<([^>]+)>$", content)
        if explicit:
            title, target = explicit.groups()
        if target.startswith("~"):
            target = target[1:]
            title = target.rsplit(".", 1)[-1]
        target = target.removesuffix("()")
        anchor = self.resolve(target, obj)
        if anchor is None:
            # a stale reference fails the strict build; one to an object that exists but has
            # no entry of its own (a private helper, a constant) is shown as code
            if target.startswith("maxaffine") and obj.path in self.documented and \
                    self._lookup(self._canonical(target)) is None:
                log.warning("maxaffine docs: %s: the reference to %r names nothing in the "
                            "package", obj.path, target)
            return f"`{title}`"
        return f"[`{title}`][{anchor}]"
