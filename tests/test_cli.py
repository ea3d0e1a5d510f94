"""The command line: help on every command, listings, clean failures with exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from maxaffine import cli


@pytest.mark.parametrize("command", [[], ["demo"], ["report"], ["experiment"], ["layers"]])
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(command + ["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: maxaffine" in out
    assert "--help" in out


def test_layers_lists_registered_and_refused_ops(capsys):
    import maxaffine

    assert cli.main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in maxaffine.supported_layers():
        assert name in out
    assert "nn.ReLU" in out and "GELU" in out.split("Refused")[1]


def test_experiment_list_matches_registry(capsys):
    from maxaffine import experiments

    assert cli.main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    for name in experiments.available():
        assert name in out


def test_unknown_experiment_fails_cleanly(capsys, tmp_path):
    code = cli.main(["experiment", "no-such-experiment", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "unknown experiment 'no-such-experiment'" in err
    assert "Traceback" not in err


def test_bad_device_fails_cleanly(capsys, tmp_path):
    code = cli.main(["demo", "--device", "nonsense", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "unknown device 'nonsense'" in err
    assert not (tmp_path / "d").exists()


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == cli.EXIT_USAGE
    assert "demo" in capsys.readouterr().out


def test_console_entry_point_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "maxaffine.cli", "layers"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "nn.Conv2d" in proc.stdout
