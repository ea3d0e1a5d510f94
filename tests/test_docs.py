"""The documentation is executable: README examples and docstring examples run."""

import doctest
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import maxaffine
from maxaffine.layers import layer_table

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks(README.read_text()))))
def test_readme_python_examples_run(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _python_blocks(README.read_text())[index]
    exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_layer_table_matches_registry():
    assert layer_table() in README.read_text(), "regenerate the README table with layer_table()"


def _modules_with_examples() -> list[str]:
    """Every module of the package whose docstrings hold examples (found, not listed by hand,
    so a new module's examples run without touching this file)."""
    names = []
    for info in pkgutil.walk_packages(maxaffine.__path__, "maxaffine."):
        source = importlib.util.find_spec(info.name).origin
        if source and source.endswith(".py") and ">>>" in Path(source).read_text():
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module):
    try:
        mod = importlib.import_module(module)
    except ImportError as err:  # a module of an optional extra whose dependency is absent
        pytest.skip(f"{module} needs an optional dependency: {err}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_doctests_cover_the_modules_that_had_them():
    assert {"maxaffine.trace", "maxaffine.affine", "maxaffine.power", "maxaffine.plot",
            "maxaffine.layers.registry", "maxaffine.partition.path"} <= set(_modules_with_examples())


def test_import_is_light():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, maxaffine; maxaffine.affine_map; "
                          "print('matplotlib' in sys.modules)"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert maxaffine.trace.__module__ == "maxaffine.trace" and callable(maxaffine.trace)


def test_functions_named_like_their_modules_stay_functions():
    import importlib

    importlib.import_module("maxaffine.templates")
    importlib.import_module("maxaffine.trace")
    assert callable(maxaffine.templates) and callable(maxaffine.trace)
    for name in maxaffine.__all__:
        assert getattr(maxaffine, name) is not None, name
