"""The user's files are never deleted or overwritten by a report, whatever happens.

Every test hashes the tree before and after: a folder of user files, a previous report with a
user file or an edited file in it, symbolic links out of the folder, Ctrl-C and SIGTERM at any
moment of the write, a write that fails half-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from clihelp import MLP_FILE, env, run, tree

from maxaffine.errors import InputError
from maxaffine.report import Report
from maxaffine.report.output import MANIFEST, check_destination, read_manifest

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and links")


def _report(title: str, n_figures: int = 3, size: int = 2000) -> Report:
    rep = Report(title)
    for i in range(n_figures):
        rep.figure(bytes([i % 251]) * size + title.encode(), f"f{i}", f"figure {i}", "c")
    rep.table("layers", ["a"], [(title,)])
    rep.record("title", title)
    return rep


def _assert_is_report(folder: Path, title: str) -> None:
    """``folder`` is exactly the report ``title``: manifest, files and hashes agree."""
    manifest = read_manifest(folder)
    assert manifest is not None
    expected = _report(title).files()
    assert set(manifest) == set(expected)
    found = {k for k, v in tree(folder).items() if v != "dir"} - {MANIFEST}
    assert found == set(expected)
    for name, data in expected.items():
        assert (folder / name).read_bytes() == data, name


def _user_project(root: Path) -> None:
    (root / "figures").mkdir(parents=True)
    (root / "figures" / "fig_for_paper.png").write_bytes(b"\x89PNG my figure")
    (root / "layers.csv").write_text("my,own,table\n")
    (root / "index.html").write_text("<p>my homepage</p>")
    (root / "notes.txt").write_text("do not touch")


# -- the command line on a folder of user files ---------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_report_out_dot_in_a_project_changes_nothing(tmp_path, extra):
    _user_project(tmp_path)
    (tmp_path / "m.py").write_text(MLP_FILE)
    before = tree(tmp_path)
    proc = run(["report", "--model", "m.py:make_model", "--data", "toy", "--out", ".", *extra],
               cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "holds no maxaffine report" in proc.stderr and "Traceback" not in proc.stderr
    assert "--out maxaffine-report" in proc.stderr  # the fix is in the message
    assert tree(tmp_path) == before


def test_demo_refuses_a_folder_of_user_files_before_training(tmp_path):
    _user_project(tmp_path / "proj")
    before = tree(tmp_path)
    t0 = time.perf_counter()
    proc = run(["demo", "--quick", "--out", "proj"], cwd=tmp_path)
    assert proc.returncode == 2 and "holds no maxaffine report" in proc.stderr, proc.stderr
    assert "training" not in proc.stderr.lower()
    assert tree(tmp_path) == before
    del t0


# -- the report writer ---------------------------------------------------------------------------
def test_every_report_folder_has_a_manifest_of_its_files(tmp_path):
    out = tmp_path / "r"
    _report("one").write(out)
    _assert_is_report(out, "one")
    doc = json.loads((out / MANIFEST).read_text())
    assert doc["format"] == "maxaffine-report-manifest" and doc["maxaffine"]


def test_previous_report_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "r"
    _report("one").write(out)
    before = tree(tmp_path)
    with pytest.raises(InputError, match="pass --overwrite"):
        _report("two").write(out)
    assert tree(tmp_path) == before
    _report("two").write(out, overwrite=True)
    _assert_is_report(out, "two")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staging left


@pytest.mark.parametrize("intruder", ["figures/fig_for_paper.png", "mine.txt",
                                      "figures/sub/deep.txt", "edited-index", "edited-figure",
                                      "empty-folder"])
def test_files_maxaffine_did_not_write_are_never_deleted(tmp_path, intruder):
    out = tmp_path / "r"
    _report("one").write(out)
    if intruder == "edited-index":
        (out / "index.html").write_text("my edits")
        named = "index.html (changed since maxaffine wrote it)"
    elif intruder == "edited-figure":
        (out / "figures" / "f1.png").write_bytes(b"retouched")
        named = "figures/f1.png (changed since"
    elif intruder == "empty-folder":
        (out / "drafts").mkdir()
        named = "drafts/"
    else:
        (out / intruder).parent.mkdir(parents=True, exist_ok=True)
        (out / intruder).write_text("user data")
        named = intruder
    before = tree(tmp_path)
    with pytest.raises(InputError, match="maxaffine never deletes") as info:
        _report("two").write(out, overwrite=True)
    assert named in str(info.value)
    assert tree(tmp_path) == before


def test_a_non_empty_folder_without_manifest_is_refused(tmp_path):
    _user_project(tmp_path / "p")
    before = tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(InputError, match="holds no maxaffine report"):
            _report("x").write(tmp_path / "p", overwrite=overwrite)
    assert tree(tmp_path) == before


def test_a_forged_or_broken_manifest_does_not_make_a_report(tmp_path):
    p = tmp_path / "p"
    _user_project(p)
    (p / MANIFEST).write_text(json.dumps({"format": "maxaffine-report-manifest",
                                          "files": {"../outside": {"sha256": "0" * 64}}}))
    before = tree(tmp_path)
    with pytest.raises(InputError, match="holds no maxaffine report"):
        _report("x").write(p, overwrite=True)
    (p / MANIFEST).write_text("{not json")
    before = tree(tmp_path)
    with pytest.raises(InputError, match="holds no maxaffine report"):
        _report("x").write(p, overwrite=True)
    assert tree(tmp_path) == before


def test_an_empty_folder_is_filled_and_keeps_its_mode(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    os.chmod(out, 0o750)
    _report("one").write(out)
    _assert_is_report(out, "one")
    assert (out.stat().st_mode & 0o777) == 0o750
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["figures", "index.html", "layers.csv", "numbers.json", MANIFEST])


def test_new_folders_get_the_umask_mode_not_0700(tmp_path):
    old = os.umask(0o022)
    try:
        _report("one").write(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    for p in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "figures"):
        assert (p.stat().st_mode & 0o777) == 0o755, p
    assert ((tmp_path / "a" / "b" / "index.html").stat().st_mode & 0o777) == 0o644


def test_out_inside_a_file_and_out_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    before = tree(tmp_path)
    with pytest.raises(InputError, match="is a file, so no folder can be created"):
        check_destination(tmp_path / "afile" / "sub")
    with pytest.raises(InputError, match="is a file, not a folder"):
        _report("x").write(tmp_path / "afile")
    assert tree(tmp_path) == before


# -- symbolic links -------------------------------------------------------------------------------
@posix_only
def test_symlinked_figures_folder_is_refused_and_never_followed(tmp_path):
    out = tmp_path / "r"
    _report("one").write(out)
    elsewhere = tmp_path / "my-figures"
    elsewhere.mkdir()
    (elsewhere / "f0.png").write_bytes(b"the user's own f0.png")
    (elsewhere / "keep.png").write_bytes(b"keep")
    import shutil

    shutil.rmtree(out / "figures")
    os.symlink(elsewhere, out / "figures")
    before = tree(tmp_path)
    with pytest.raises(InputError, match=r"figures \(a symbolic link\)") as info:
        _report("two").write(out, overwrite=True)
    assert ".maxaffine-staging" not in str(info.value)
    assert tree(tmp_path) == before


@posix_only
def test_symlinked_file_and_symlinked_out_are_refused(tmp_path):
    out = tmp_path / "r"
    _report("one").write(out)
    (tmp_path / "precious.csv").write_text("mine")
    os.unlink(out / "layers.csv")
    os.symlink(tmp_path / "precious.csv", out / "layers.csv")
    before = tree(tmp_path)
    with pytest.raises(InputError, match=r"layers.csv \(a symbolic link\)"):
        _report("two").write(out, overwrite=True)
    os.symlink(out, tmp_path / "link")
    with pytest.raises(InputError, match="is a symbolic link"):
        _report("two").write(tmp_path / "link", overwrite=True)
    os.unlink(tmp_path / "link")
    assert tree(tmp_path) == before


# -- interruptions --------------------------------------------------------------------------------
WRITER = textwrap.dedent('''
    import os, signal, sys, time
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from test_files import _report
    from maxaffine.report import output
    out, mode = Path(sys.argv[1]), sys.argv[2]
    real_switch, real_tree = output._switch, output._write_tree
    if mode == "at-switch":  # the signal arrives exactly when the old report is swapped out
        def switch(a, b):
            os.kill(os.getpid(), signal.SIGINT)
            real_switch(a, b)
        output._switch = switch
    elif mode == "while-staging":
        def write_tree(root, files):
            digests = real_tree(root, dict(list(files.items())[:2]))
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
            return digests
        output._write_tree = write_tree
    elif mode == "loop":
        print("ready", flush=True)
    i = 0
    while True:
        _report("new" if i % 2 == 0 else "one", n_figures=40, size=20000).write(
            out, overwrite=True)
        i += 1
        if mode != "loop":
            break
''')


def _writer(tmp_path: Path, out: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(here=str(Path(__file__).resolve().parent)))
    return subprocess.Popen([sys.executable, str(script), str(out), mode], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _one_of_the_reports(out: Path) -> str:
    """The folder is one complete report, the old or the new one: never a mix."""
    for title, n in (("one", 40), ("new", 40)):
        expected = _report(title, n_figures=n, size=20000).files()
        if (out / "numbers.json").exists() and \
                json.loads((out / "numbers.json").read_text())["title"] == title:
            found = {k for k, v in tree(out).items() if v != "dir"} - {MANIFEST}
            assert found == set(expected)
            for name, data in expected.items():
                assert (out / name).read_bytes() == data, name
            assert set(read_manifest(out)) == set(expected)
            return title
    raise AssertionError(f"not a complete report: {sorted(tree(out))}")


@posix_only
@pytest.mark.parametrize("mode, expected", [("at-switch", "new"), ("while-staging", "one")])
def test_ctrl_c_at_the_switch_or_while_staging_leaves_one_complete_report(tmp_path, mode,
                                                                          expected):
    parent = tmp_path / "parent"
    out = parent / "r"
    _report("one", n_figures=40, size=20000).write(out)
    (parent / "user.txt").write_text("mine")
    proc = _writer(tmp_path, out, mode)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert _one_of_the_reports(out) == expected
    assert sorted(p.name for p in parent.iterdir()) == ["r", "user.txt"]  # staging removed


@posix_only
@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45, 0.8, 1.3])
def test_sigint_at_a_random_moment_never_leaves_a_mix(tmp_path, delay):
    parent = tmp_path / "parent"
    out = parent / "r"
    _report("one", n_figures=40, size=20000).write(out)
    (parent / "user.txt").write_text("mine")
    user = tree(parent / "user.txt") if (parent / "user.txt").is_dir() else \
        (parent / "user.txt").read_text()
    proc = _writer(tmp_path, out, "loop")
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    _one_of_the_reports(out)
    assert sorted(p.name for p in parent.iterdir()) == ["r", "user.txt"]
    assert (parent / "user.txt").read_text() == user


@posix_only
def test_a_write_that_fails_half_way_keeps_the_old_report_and_names_no_staging(tmp_path):
    # a file-size limit makes the 80 kB figure fail to write (EFBIG) after smaller files
    parent = tmp_path / "parent"
    out = parent / "r"
    _report("one").write(out)
    before = tree(tmp_path)
    code = textwrap.dedent(f'''
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        from test_files import _report
        from maxaffine.errors import InputError
        resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))
        try:
            _report("two", n_figures=2, size=80000).write({str(out)!r}, overwrite=True)
        except InputError as exc:
            print(exc)
            sys.exit(7)
    ''')
    proc = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, check=False,
                          text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr
    assert f"cannot write the report to {out}" in proc.stdout
    assert "File too large" in proc.stdout
    assert "staging" not in proc.stdout and f"{parent}/." not in proc.stdout
    assert tree(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_unwritable_out_is_refused_before_any_work_naming_the_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (tmp_path / "m.py").write_text(MLP_FILE)
    os.chmod(locked, 0o555)
    try:
        proc = run(["report", "--model", "m.py:make_model", "--data", "toy", "--out",
                    "locked/rep"], cwd=tmp_path)
    finally:
        os.chmod(locked, 0o755)
    assert proc.returncode == 2 and "is not writable" in proc.stderr, proc.stderr
    assert "staging" not in proc.stderr and "locked/." not in proc.stderr
    assert list(locked.iterdir()) == []


def test_partition_picture_example_does_not_overwrite_committed_figures(tmp_path,
                                                                          monkeypatch):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "partition_picture.py"
    spec = importlib.util.spec_from_file_location("partition_picture_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = []
    for name in ("figure_mlp", "figure_subdivision", "figure_digits"):
        monkeypatch.setattr(module, name, lambda out, quick, _n=name: seen.append(out) or
                            out / f"{_n}.png")
    monkeypatch.chdir(tmp_path)
    module.main([])
    assert seen and all(p == Path("partition-pictures") for p in seen)
    assert (tmp_path / "partition-pictures").is_dir()
