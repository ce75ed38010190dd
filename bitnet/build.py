"""Build the C++ engine with CMake + Ninja, both taken from PyPI (``pip install -r
requirements.txt`` brings them), so a machine needs only a C++ compiler.

``build_engine`` configures the build directory when it has not been configured yet (or was
configured with a ninja that no longer exists, e.g. after re-creating the venv) and then runs
``cmake --build``; deciding what is out of date is Ninja's job, so a second run takes a moment.
Both commands go to one log file; a failure is reported with the command, its exit code and the
tail of the compiler output (see ``bitnet.common.run_logged``).

The same code builds for ``setup_env.py`` and ``utils/build.py`` (into the clone's ``build/``);
``pip install .`` builds through scikit-build-core (pyproject.toml) from the same CMakeLists.txt.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from bitnet.common import REPO_ROOT, BitnetError, LiveLine, build_dir, run_logged


def _package_bin_dir(name: str) -> str | None:
    """The bin directory of the PyPI ``cmake``/``ninja`` package, if it is installed."""
    try:
        if name == "cmake":
            import cmake

            return cmake.CMAKE_BIN_DIR
        if name == "ninja":
            import ninja

            return ninja.BIN_DIR or None
    except (ImportError, AttributeError):
        # AttributeError: without the PyPI package, the repository's own cmake/ folder (toolchain
        # files) imports as an empty namespace package when Python runs from the repository root.
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
    """Configure (if needed) and build the engine in ``bdir`` (default: ``bitnet.common.build_dir()``)
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
