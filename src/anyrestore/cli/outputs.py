"""Where a command's outputs go, checked before any model loads or image is read: a folder that can be
written, one output per input, no input overwritten, and no existing file replaced unless asked."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from anyrestore.errors import AnyRestoreError


def check_output_folder(folder: Path) -> None:
    """``folder`` is a folder, or can be made one, and files can be written there; else a one-line error.

    Nothing is created: writability is probed in the nearest existing folder with a nameless temporary.
    """
    if folder.exists() and not folder.is_dir():
        raise AnyRestoreError(f"{folder}: exists and is not a folder (-o takes a folder)")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AnyRestoreError(f"{folder}: cannot create a folder here: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise AnyRestoreError(f"{folder}: cannot write into {existing} ({exc.strerror or exc})") from None


def check_outputs(targets: Mapping[Path, Path], *, inputs: Iterable[Path], overwrite: bool) -> None:
    """Refuse a run whose outputs (input -> output file) collide, would overwrite an input, or, without
    ``overwrite``, would replace a file that exists already: this run did not write it."""
    written_by: dict[Path, Path] = {}
    for source, target in targets.items():
        key = target.resolve()
        if key in written_by:
            raise AnyRestoreError(
                f"{target}: both {written_by[key]} and {source} would be written here "
                "(use separate output folders, or rename one)"
            )
        written_by[key] = source
    sources = {p.resolve() for p in inputs}
    clash = next((t for t in targets.values() if t.resolve() in sources), None)
    if clash is not None:
        raise AnyRestoreError(f"{clash}: refusing to overwrite an input file (use -o or --suffix)")
    existing = [t for t in targets.values() if t.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise AnyRestoreError(
            f"{existing[0]}: exists and this run did not write it{more}; pass --overwrite to replace"
        )
