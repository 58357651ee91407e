"""The CLI's help: cheap (no torch import before a command runs) and complete (every argument explained)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from anyrestore.cli.main import COMMANDS, build_parser

_HEAVY = ("torch", "numpy", "PIL", "cv2")


def _imports_after_help(*argv: str) -> list[str]:
    code = (
        "import sys\n"
        "from anyrestore.cli.main import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(','.join(m for m in {_HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: anyrestore" in done.stdout
    return [m for m in (done.stderr.strip().splitlines() or [""])[-1].split(",") if m]


def test_top_level_help_imports_no_torch() -> None:
    assert _imports_after_help("--help") == []


def test_command_help_imports_no_torch() -> None:
    # One interpreter for all commands: building the parser imports every command module anyway.
    code = (
        "import sys\n"
        "from anyrestore.cli.main import build_parser\n"
        "parser = build_parser()\n"
        f"for name in {sorted(COMMANDS)!r}:\n"
        "    try:\n"
        "        parser.parse_args([name, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(','.join(m for m in {_HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (done.stderr.strip().splitlines() or [""])[-1] == ""


def _undocumented(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(" ".join((*path, name)))
                missing += _undocumented(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction) and not action.help:
            missing.append(" ".join((*path, *(action.option_strings or [action.dest]))))
    return missing


def test_every_argument_has_a_help_text() -> None:
    assert _undocumented(build_parser()) == []


@pytest.mark.parametrize("argv", [["evaluate", "--help"]])
def test_preset_help_names_what_each_preset_does(argv, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    out = " ".join(capsys.readouterr().out.split())
    assert "basicsr: uint8-quantised, Y" in out and "rgb: uint8-quantised, RGB" in out
