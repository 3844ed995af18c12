"""`python -m sentra.build`: dist/sentra.pyz, one file holding Sentra, its pure-Python dependencies and the viewer.

The dependencies are copied from this interpreter's site-packages (the files each one's RECORD lists), so the build
needs no network and the pyz carries the versions installed here. Compiled files are left out, so the pyz runs on
any platform with Python 3.11+: tornado falls back to pure Python without its speedups, and pyjwt's optional
crypto backend (RS256/ES256 tokens) is not carried. Bytecode for this Python version goes in beside the sources; other
versions compile the sources instead.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.metadata
import py_compile
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import zipapp
from collections.abc import Iterator, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path

import sentra
from sentra.app import viewer_files

DEFAULT_OUTPUT = Path("dist") / "sentra.pyz"
INTERPRETER = "/usr/bin/env python3"
MAIN = '''\
"""sentra.pyz: serve, or run the `sentra` command named first."""

from sentra.pyz_main import run

raise SystemExit(run())
'''
# Compiled code ties the pyz to one platform; tests, type stubs and C sources are not needed at run time.
SKIPPED_SUFFIXES = frozenset({".so", ".pyd", ".dylib", ".dll", ".c", ".h", ".pyx", ".pxd", ".pyi", ".pyc"})
SKIPPED_DIRS = frozenset({"__pycache__", "test", "tests"})
# Of a distribution's metadata, what says what it is and under which licence it may be copied.
KEPT_METADATA = re.compile(r"METADATA|.*(LICEN[CS]E|COPYING|NOTICE|AUTHORS).*", re.IGNORECASE)
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
LISTENING = "Sentra listening"


class BuildError(Exception):
    """The pyz cannot be built; the message says why in one line."""


# Distributions that are nothing without their compiled code: left out, and Sentra runs on asyncio's own loop
# and reads ingest bodies with its pure-Python parser.
COMPILED_ONLY = frozenset({"uvloop", "msgspec"})
# Sentra's own modules that are nothing without one of those: left out too (sentra/lines.py goes without).
COMPILED_MODULES = frozenset({"ingest_decode.py"})
# The modules of the optional `scale` extra's backends (they import asyncpg or redis-py), loaded only when a setting
# asks for them: PostgreSQL storage, the Redis bus and rate limit, and the Redis bridge.
SCALE_MODULE = re.compile(
    r"sentra\.storage\.postgres\w*|sentra\.bus\.redis\w*|sentra\.ratelimit\.redis\w*|sentra\.bridge"
)


def declared_requirements() -> list[str]:
    """Sentra's runtime requirements: from pyproject.toml in a checkout, else from the installed metadata."""
    pyproject = Path(sentra.__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    return importlib.metadata.requires("sentra") or []


def _marker_holds(marker: str) -> bool:
    if "extra" in marker:
        return False  # extras are optional by definition; pyjwt[crypto] is the one Sentra names
    try:
        from packaging.markers import Marker
    except ImportError:
        return True  # then whether it is installed decides
    return bool(Marker(marker).evaluate())


def requirement_name(requirement: str) -> tuple[str, bool] | None:
    """(distribution name, conditional) of a requirement, or None if it does not apply to this interpreter."""
    spec, _, marker = requirement.partition(";")
    if marker.strip() and not _marker_holds(marker):
        return None
    match = _NAME.match(spec)
    if match is None:
        raise BuildError(f"cannot read the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), bool(marker.strip())


def runtime_distributions() -> list[importlib.metadata.Distribution]:
    """Sentra's runtime dependencies and theirs, as installed here, extras left out."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = [req for r in declared_requirements() if (req := requirement_name(r))]
    while pending:
        name, conditional = pending.pop()
        if name in found or name in COMPILED_ONLY:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if conditional:
                continue
            raise BuildError(f"{name} is not installed: run `pip install .` first") from None
        found[name] = dist
        pending += [req for r in dist.requires or [] if (req := requirement_name(r))]
    return [found[name] for name in sorted(found)]


def distribution_files(dist: importlib.metadata.Distribution) -> Iterator[tuple[Path, str]]:
    """(installed file, path in the pyz) of each file of `dist` the pyz needs."""
    files = dist.files
    if files is None:
        raise BuildError(f"{dist.metadata['Name']} lists no files (no RECORD): reinstall it with pip")
    for file in files:
        parts = file.parts
        if parts[0] == "..":
            continue  # console scripts and the like, outside site-packages
        if parts[0].endswith(".dist-info"):
            if not KEPT_METADATA.fullmatch(parts[-1]):
                continue
        elif SKIPPED_DIRS.intersection(parts[:-1]) or file.suffix in SKIPPED_SUFFIXES:
            continue
        yield Path(str(dist.locate_file(file))), file.as_posix()


def copy_tree(source: Traversable, target: Path) -> None:
    """Copy a resource directory (a real one, or one inside a zip) to `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for child in source.iterdir():
        if child.is_dir():
            copy_tree(child, target / child.name)
        else:
            (target / child.name).write_bytes(child.read_bytes())


def stage(staging: Path) -> None:
    """Lay out the pyz's contents in `staging`: sentra with its viewer, the dependencies, __main__.py."""
    package = Path(sentra.__file__).resolve().parent
    for source in sorted(package.rglob("*.py")):
        relative = source.relative_to(package)
        if "__pycache__" not in relative.parts and relative.as_posix() not in COMPILED_MODULES:
            target = staging / "sentra" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    copy_tree(viewer_files(), staging / "sentra" / "static")
    for dist in runtime_distributions():
        for source, name in distribution_files(dist):
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (staging / "__main__.py").write_text(MAIN)


def check_imports(staging: Path) -> None:
    """Import every sentra module from `staging` alone, with no site-packages, as the pyz will (but those of
    the scale extra, whose engines need compiled packages: the pyz refuses those settings in one line)."""
    modules = [
        ".".join(path.relative_to(staging).with_suffix("").parts)
        for path in sorted((staging / "sentra").rglob("*.py"))
        if path.name != "__main__.py"
    ]
    modules = [module for module in modules if SCALE_MODULE.fullmatch(module) is None]
    script = f"import sys; sys.path.insert(0, {str(staging)!r})\nfor m in {modules!r}: __import__(m)"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BuildError(f"the pyz would not run, a module is missing from it: {last}")


def build(output: Path) -> Path:
    """Build the pyz at `output` and return its path."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentra-pyz-") as temp:
        staging = Path(temp) / "sentra.pyz"
        staging.mkdir()
        stage(staging)
        check_imports(staging)
        # Legacy (beside the source) is where zipimport looks; an unchecked hash never goes stale in a zip.
        # Tracebacks then name sentra.pyz/tornado/web.py rather than a temporary directory.
        compileall.compile_dir(
            staging,
            quiet=1,
            legacy=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            stripdir=str(staging),
            prependdir=output.name,
        )
        partial = output.with_name(output.name + ".partial")
        zipapp.create_archive(staging, partial, interpreter=INTERPRETER, compressed=True)
        partial.replace(output)
    return output


def startup_seconds(pyz: Path, runs: int) -> list[float]:
    """Seconds from launching `python3 sentra.pyz` to its "Sentra listening" line, once per run, each on a new DB."""
    times: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="sentra-start-") as temp:
            args = [sys.executable, str(pyz.resolve()), "--port", "0", "--db", "sentra.db"]
            started = time.perf_counter()
            process = subprocess.Popen(args, cwd=temp, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                assert process.stdout is not None
                line = process.stdout.readline()
                times.append(time.perf_counter() - started)
                if not line.startswith(LISTENING):
                    raise BuildError(f"the pyz did not start: {line.strip() or 'no output'}")
            finally:
                process.terminate()
                process.communicate(timeout=30)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """Build dist/sentra.pyz; with --measure, report its size and start-up time."""
    parser = argparse.ArgumentParser(prog="python -m sentra.build", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"where to write (default {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--measure", type=int, nargs="?", const=5, metavar="RUNS", help="then time RUNS start-ups (default 5)"
    )
    args = parser.parse_args(argv)
    try:
        pyz = build(args.output)
        print(f"{pyz}: {pyz.stat().st_size / 1e6:.1f} MB ({pyz.stat().st_size} bytes)")
        if args.measure:
            times = startup_seconds(pyz, args.measure)
            print(
                f"start-up to {LISTENING!r}: median {statistics.median(times):.2f} s of {len(times)} "
                f"(min {min(times):.2f} s, max {max(times):.2f} s)"
            )
    except BuildError as exc:
        print(f"sentra.build: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
