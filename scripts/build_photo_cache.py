"""Rebuild the photo cache from manifests/photos.tsv: fetch the packages, check every hash, prepare.

    python scripts/build_photo_cache.py [--cache DIR] [--sources DIR] [--split test ...] [--download-only]

Writes ``<cache>/<split>/<id>.png`` (default cache ~/.cache/anyrestore/photos). Packages go to
``<sources>`` (default ~/.cache/anyrestore/sources): wheels from ``pip download --no-deps`` in
``pypi/``, Debian packages from ``apt-get download`` in ``debian/``, extracted with ``dpkg -x`` next to
them (no root, nothing installed). A PyPI photo is read from the installed distribution when its version
matches. A file whose sha256 differs from the manifest is reported on one line and the exit status is 1.
Photos already cached from the same source file by the same preparation rule are skipped; cached photos
that the manifest does not list in their split are removed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from anyrestore.data.photo_manifest import (
    SPLITS,
    ManifestError,
    PhotoEntry,
    debian_file,
    default_manifest_path,
    installed_file,
    is_cached,
    photo_files,
    prepare_photo,
    read_from_wheel,
    read_manifest,
    verify,
    write_cached,
)

CACHE = Path.home() / ".cache" / "anyrestore"
_FAILED: dict[str, str] = {}


def _run(command: list[str], cwd: Path) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as error:
        raise ManifestError(f"{command[0]}: {error.strerror} (needed to fetch the sources)") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ManifestError(f"{' '.join(command)} failed: {tail[0]}")


def wheel_for(package: str, version: str, sources: Path) -> Path:
    """The wheel of ``package==version`` in ``<sources>/pypi``, downloaded with pip when absent."""
    folder = sources / "pypi"
    prefix = f"{package.replace('-', '_')}-{version}-".lower()
    found = sorted(w for w in folder.glob("*.whl") if w.name.lower().startswith(prefix))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder)]
        _run([*pip, f"{package}=={version}"], folder)
        found = sorted(w for w in folder.glob("*.whl") if w.name.lower().startswith(prefix))
        if not found:
            raise ManifestError(f"{folder}: pip left no wheel {prefix}*.whl")
    return found[0]


def extract_debian(package: str, version: str, sources: Path) -> Path:
    """``<sources>/debian/<package>_<version>/``: the package fetched with apt-get and dpkg -x'ed."""
    folder = sources / "debian"
    probe = PhotoEntry("x", "train", "debian", package, version, "", "0" * 64, 1, 1, "")
    tree = debian_file(probe, sources)
    if (tree / ".complete").is_file():
        return tree
    folder.mkdir(parents=True, exist_ok=True)
    pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"
    debs = sorted(folder.glob(pattern))
    if not debs:
        _run(["apt-get", "download", f"{package}={version}"], folder)
        debs = sorted(folder.glob(pattern))
        if not debs:
            raise ManifestError(f"{folder}: apt-get left no {pattern}")
    staging = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=folder))
    try:
        _run(["dpkg", "-x", str(debs[0]), str(staging)], folder)
        (staging / ".complete").write_text(debs[0].name + "\n")
        if tree.exists():
            shutil.rmtree(tree)
        staging.rename(tree)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tree


def source_bytes(entry: PhotoEntry, sources: Path) -> tuple[bytes, str]:
    """The source file's bytes and a name for it in messages."""
    if entry.kind == "pypi":
        local = installed_file(entry)
        if local is not None:
            return local.read_bytes(), str(local)
        wheel = wheel_for(entry.package, entry.version, sources)
        return read_from_wheel(wheel, entry), f"{wheel}!{entry.path}"
    key = f"{entry.package}={entry.version}"
    if key in _FAILED:  # one failed fetch per package, not one per photo
        raise ManifestError(f"{_FAILED[key]} ({entry.id})")
    try:
        extract_debian(entry.package, entry.version, sources)
    except ManifestError as error:
        _FAILED[key] = str(error)
        raise ManifestError(f"{error} ({entry.id})") from None
    path = debian_file(entry, sources)
    if not path.is_file():
        raise ManifestError(f"{path}: missing from package {entry.package} {entry.version} ({entry.id})")
    return path.read_bytes(), str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=default_manifest_path())
    parser.add_argument("--cache", type=Path, default=CACHE / "photos")
    parser.add_argument("--sources", type=Path, default=CACHE / "sources")
    parser.add_argument("--split", action="append", choices=SPLITS, help="only these splits (repeatable)")
    parser.add_argument("--download-only", action="store_true", help="fetch and verify, write no photos")
    args = parser.parse_args(argv)
    try:
        entries = [e for e in read_manifest(args.manifest) if not args.split or e.split in args.split]
    except (ManifestError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    todo = [e for e in entries if args.download_only or not is_cached(e, args.cache)]
    failures = 0
    for entry in tqdm(todo, desc="photos", unit="photo", disable=not todo):
        try:
            data, where = source_bytes(entry, args.sources)
            verify(data, entry, where)
            if not args.download_only:
                write_cached(prepare_photo(data, entry.split), entry, args.cache)
        except ManifestError as error:
            failures += 1
            tqdm.write(f"error: {error}", file=sys.stderr)
    if not args.download_only:
        # A split folder holds exactly its manifest rows: datasets and evaluations read whole folders.
        wanted = {(e.split, e.id) for e in entries}
        stale = [
            p
            for split in args.split or SPLITS
            for p in photo_files(args.cache, split)
            if (split, p.stem) not in wanted
        ]
        for path in stale:
            path.unlink()
        if stale:
            print(f"removed {len(stale)} cached photo(s) that the manifest no longer lists in their split")
    done = len(entries) - failures
    print(
        f"{done}/{len(entries)} photos ready in {args.cache} ({len(entries) - len(todo)} were cached already)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
