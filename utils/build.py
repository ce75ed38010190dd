"""Build the engine alone (used by .ci/run for the sanitizer and clang builds).

    python utils/build.py [--build-dir DIR] [--sanitize] [-j N] [--log-dir DIR]

The work is bitnet.build.build_engine, which setup_env.py runs too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `bitnet` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.build import build_engine  # noqa: E402
from bitnet.common import run_cli  # noqa: E402


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--build-dir", "build_dir_opt", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Build directory  [default: $BITNET_BUILD_DIR or build]")
@click.option("--sanitize", is_flag=True,
              help="Configure with AddressSanitizer + UBSan (-DBITNET_SANITIZE=ON).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Parallel compile jobs  [default: Ninja's choice]")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("logs"),
              show_default=True, help="Where build.log goes.")
def main(build_dir_opt: Path | None, sanitize: bool, jobs: int | None, log_dir: Path) -> None:
    """Configure (once) and build the engine with CMake + Ninja."""
    args = ["-DBITNET_SANITIZE=ON"] if sanitize else []
    bin_dir = build_engine(build_dir_opt, log_dir, jobs=jobs, cmake_args=args)
    click.echo(f"built: {bin_dir}")


if __name__ == "__main__":
    run_cli(main)
