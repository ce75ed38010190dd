"""Build the engine alone (used by .ci/run for the sanitizer and clang builds).

    python utils/build.py [--build-dir DIR] [--sanitize | --tsan | --fuzz] [-j N] [--log-dir DIR]

The work is bitnet.build.build_engine, which setup_env.py runs too.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `bitnet` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.build import build_engine  # noqa: E402
from bitnet.common import BitnetError, run_cli  # noqa: E402


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
