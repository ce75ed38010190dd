"""Build the C++ engine with CMake + Ninja, both taken from PyPI (``pip install -r
requirements.txt`` brings them), so a machine needs only a C++ compiler.

``build_engine`` configures the build directory when it has not been configured yet (or was
configured with a ninja that no longer exists, e.g. after re-creating the venv) and then runs
``cmake --build``; deciding what is out of date is Ninja's job, so a second run takes a moment.
Both commands go to one log file; a failure is reported with the command, its exit code and the
tail of the compiler output (see ``utils.common.run_logged``).

CLI (used by .ci/run for the sanitizer builds)::

    python utils/build.py [--build-dir DIR] [--sanitize | --tsan | --fuzz] [-j N] [--log-dir DIR]
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.common import REPO_ROOT, BitnetError, LiveLine, build_dir, run_cli, run_logged


def _package_bin_dir(name: str) -> str | None:
    """The bin directory of the PyPI ``cmake``/``ninja`` package, if it is installed."""
    try:
        if name == "cmake":
            import cmake

            return cmake.CMAKE_BIN_DIR
        if name == "ninja":
            import ninja

            return ninja.BIN_DIR or None
    except ImportError:
        return None
    return None


def find_tool(name: str) -> Path:
    """Path of the ``cmake`` or ``ninja`` executable.

    Looked up on PATH first, then in the PyPI package's own bin directory, then next to the running
    Python (a venv's bin/, which is not on PATH when the venv's python is run without activating
    it). Raise ``BitnetError`` with the install command when none is found.
    """
    candidates = [shutil.which(name)]
    pkg_dir = _package_bin_dir(name)
    if pkg_dir:
        candidates.append(shutil.which(name, path=pkg_dir))
    candidates.append(shutil.which(name, path=str(Path(sys.executable).parent)))
    for found in candidates:
        if found:
            return Path(found)
    raise BitnetError(f"{name} not found: install it with `pip install -r requirements.txt`")


def _cache_entry(cache: Path, key: str) -> str | None:
    """Value of ``key`` in a CMakeCache.txt (lines ``KEY:TYPE=VALUE``), or None."""
    for line in cache.read_text(errors="replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.split(":", 1)[0] == key:
            return value
    return None


def _needs_configure(bdir: Path, ninja: Path) -> bool:
    cache = bdir / "CMakeCache.txt"
    if not cache.exists() or not (bdir / "build.ninja").exists():
        if cache.exists() and _cache_entry(cache, "CMAKE_GENERATOR") not in (None, "Ninja"):
            raise BitnetError(
                f"{bdir} was configured with the '{_cache_entry(cache, 'CMAKE_GENERATOR')}' "
                f"generator, not Ninja: delete {bdir} (or point BITNET_BUILD_DIR elsewhere) and run again"
            )
        return True
    make_program = _cache_entry(cache, "CMAKE_MAKE_PROGRAM")
    return make_program is None or not Path(make_program).exists() or Path(make_program) != ninja


def build_engine(
    bdir: Path | None = None,
    log_dir: Path = Path("logs"),
    *,
    jobs: int | None = None,
    cmake_args: Sequence[str] = (),
    log_name: str = "build.log",
) -> Path:
    """Configure (if needed) and build the engine in ``bdir`` (default: ``utils.common.build_dir()``)
    and return its ``bin`` directory (holding ``bitnet-cli``).

    ``jobs`` caps parallel compile jobs (default: Ninja's choice). ``cmake_args`` are extra
    ``-D`` options; giving any forces a (quick) re-configure so they take effect. The log
    ``log_dir/log_name`` is rewritten on every call. Raise ``BitnetError`` if a step fails.
    """
    bdir = Path(bdir) if bdir is not None else build_dir()
    bdir = bdir if bdir.is_absolute() else Path.cwd() / bdir
    log_path = Path(log_dir) / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    cmake, ninja = find_tool("cmake"), find_tool("ninja")
    live = LiveLine()
    try:
        if cmake_args or _needs_configure(bdir, ninja):
            run_logged(
                [cmake, "-S", REPO_ROOT, "-B", bdir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_MAKE_PROGRAM={ninja}", f"-DPython3_EXECUTABLE={sys.executable}", *cmake_args],
                log_path, "configuring the engine (cmake)", status=live,
            )
        build_cmd = [cmake, "--build", bdir]
        if jobs:
            build_cmd += ["-j", str(jobs)]
        run_logged(build_cmd, log_path, "building the engine", status=live)
    finally:
        live.clear()
    return bdir / "bin"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--build-dir", "build_dir_opt", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Build directory  [default: $BITNET_BUILD_DIR or build]")
@click.option("--sanitize", is_flag=True,
              help="Configure with AddressSanitizer + UBSan (-DBITNET_SANITIZE=ON).")
@click.option("--tsan", is_flag=True, help="Configure with ThreadSanitizer (-DBITNET_TSAN=ON).")
@click.option("--fuzz", is_flag=True,
              help="Build only the libFuzzer harnesses of tests/fuzz (-DBITNET_FUZZ=ON; needs clang, "
                   "taken from $CXX or else clang++-19 / clang++ on PATH).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Parallel compile jobs  [default: Ninja's choice]")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("logs"),
              show_default=True, help="Where build.log goes.")
def main(build_dir_opt: Path | None, sanitize: bool, tsan: bool, fuzz: bool, jobs: int | None,
         log_dir: Path) -> None:
    """Configure (once) and build the engine with CMake + Ninja."""
    if sanitize + tsan + fuzz > 1:
        raise click.UsageError("choose one of --sanitize, --tsan and --fuzz")
    args = ["-DBITNET_SANITIZE=ON"] if sanitize else ["-DBITNET_TSAN=ON"] if tsan else []
    if fuzz:
        args = ["-DBITNET_FUZZ=ON", "-DBITNET_BUILD_TOOLS=OFF", "-DBITNET_BUILD_TESTS=OFF",
                *_clang_args()]
    bin_dir = build_engine(build_dir_opt, log_dir, jobs=jobs, cmake_args=args)
    click.echo(f"built: {bin_dir}")


def _clang_args() -> list[str]:
    """-D options naming clang for a fresh configure, unless $CXX already chooses a compiler (the
    harnesses need libFuzzer, which only clang has)."""
    if os.environ.get("CXX"):
        return []
    for suffix in ("-19", ""):
        cxx = shutil.which(f"clang++{suffix}")
        cc = shutil.which(f"clang{suffix}")
        if cxx and cc:
            return [f"-DCMAKE_CXX_COMPILER={cxx}", f"-DCMAKE_C_COMPILER={cc}"]
    raise BitnetError("--fuzz needs clang: install it (apt-get install clang-19 libclang-rt-19-dev) "
                      "or set CXX to a clang++")


if __name__ == "__main__":
    run_cli(main)
