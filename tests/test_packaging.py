"""What the wheel ships beyond the modules: the PEP 561 marker, so type checkers read our hints."""

from __future__ import annotations

import tomllib
from pathlib import Path

import anyrestore

ROOT = Path(__file__).resolve().parents[1]


def test_py_typed_marker_is_shipped() -> None:
    assert (Path(anyrestore.__file__).parent / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["anyrestore"]
