"""Plumbing shared by the user-facing scripts: where things live, how errors reach the user, how
external commands are run.

- Paths: the repository root, the models root (``BITNET_MODELS_DIR`` overrides it, for tests), the
  engine's build directory (``BITNET_BUILD_DIR`` overrides it), and ``DEFAULT_MODEL_DIR``: the small
  model that ships in ``models/``, used when the user names none. Swapping the shipped model is a
  change of that one constant.
- Errors: ``BitnetError`` is the one error type for bad input and failed steps. ``run_cli`` runs a
  click command and turns any ``click.ClickException`` (``BitnetError`` is one) into one line on
  stderr and exit code 1; ``BITNET_DEBUG=1`` lets the traceback through instead.
- ``run_logged`` runs an external command with its output going to a log file, echoes the command
  there, and on failure raises ``BitnetError`` naming the command, its exit code and the tail of
  its output, so the user never has to go and look for what went wrong.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from bitnet.errors import BitnetError

PACKAGE_DIR = Path(__file__).resolve().parent
# The clone the package sits in (scripts, models/, build/); in an installed wheel this is
# site-packages, and IN_CLONE is False.
REPO_ROOT = PACKAGE_DIR.parent
IN_CLONE = (REPO_ROOT / "CMakeLists.txt").is_file() and (REPO_ROOT / "src").is_dir()

# The model that ships with the repository (HF layout, converted by setup_env.py on first run).
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "bitnet-tiny"
DEFAULT_MODEL = DEFAULT_MODEL_DIR / "ggml-model-i2_s.gguf"  # what setup_env.py makes of it
# A prompt that suits it (it was trained on Python's documentation).
DEFAULT_PROMPT = "Create a new"


def threads_option(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """Click callback of a -t option: the engine's rules (bitnet/bindings.py: check_n_threads), a
    refusal as a one-line error and a warning on stderr."""
    from bitnet import bindings

    try:
        warning = bindings.check_n_threads(value)
    except bindings.BitnetError as e:
        raise BitnetError(str(e)) from None
    if warning:
        click.echo(warning, err=True)
    return value


def default_threads() -> int:
    """The default of a -t option: the CPUs this process may use."""
    from bitnet import bindings

    return bindings.default_n_threads()


def models_root() -> Path:
    """Folder that holds one sub-folder per model; ``BITNET_MODELS_DIR`` overrides ``models/`` of the
    clone, or, for an installed package, ``~/.cache/bitnet/models`` (``$XDG_CACHE_HOME``)."""
    if os.environ.get("BITNET_MODELS_DIR"):
        return Path(os.environ["BITNET_MODELS_DIR"])
    if IN_CLONE:
        return REPO_ROOT / "models"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bitnet" / "models"


def build_dir() -> Path:
    """The engine's CMake build directory; ``BITNET_BUILD_DIR`` (absolute, or relative to the
    repository root) overrides ``build/``."""
    path = Path(os.environ.get("BITNET_BUILD_DIR") or "build")
    return path if path.is_absolute() else REPO_ROOT / path


def engine_dir() -> Path:
    """Where the engine's ``lib/libbitnet.so`` and ``bin/`` tools are: ``BITNET_BUILD_DIR`` when
    set, else the installed package's own copy (a wheel), else the clone's build directory."""
    if not os.environ.get("BITNET_BUILD_DIR") and (PACKAGE_DIR / "lib" / "libbitnet.so").is_file():
        return PACKAGE_DIR
    return build_dir()


def engine_tool(name: str) -> Path:
    """Path of the engine's executable `name` (bitnet-cli, bitnet-bench, ...); ``BitnetError``
    when the engine is not built."""
    tool = engine_dir() / "bin" / name
    if not (tool.is_file() and os.access(tool, os.X_OK)):
        raise BitnetError(f"the engine is not built ({display_path(tool)} is missing): run python setup_env.py")
    return tool


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it, else absolute: short in
    messages, and still right when pasted into a shell."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_cli(command: click.Command) -> None:
    """Run a click command as a script's ``main``: errors become one line and exit code 1, and
    ``-h`` is ``--help`` (as in every llama.cpp tool) unless the command says otherwise.

    Click's own usage errors keep click's format (usage line + message, exit code 2). Set
    ``BITNET_DEBUG=1`` to see the Python traceback of any error instead.
    """
    command.context_settings.setdefault("help_option_names", ["-h", "--help"])
    debug = os.environ.get("BITNET_DEBUG", "") not in ("", "0")
    try:
        rc = command.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:  # wrong flags: click's usage line + message, exit code 2
        e.show()
        sys.exit(e.exit_code)
    except click.ClickException as e:
        if debug:
            raise
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:  # disk full, permission denied...: the OS message names the file
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


def run_logged(
    cmd: Sequence[str | os.PathLike],
    log_path: Path,
    what: str,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    status: Callable[[str], None] | None = None,
    tail_lines: int = 25,
) -> None:
    """Run ``cmd``, appending ``$ <cmd>`` and all its output (stdout and stderr merged) to
    ``log_path``.

    ``what`` names the step for the error message ("building the engine"). ``status``, when given,
    is called with each output line as it arrives (for a live progress line). On a non-zero exit,
    raise ``BitnetError`` with the step, the command, the exit code, the log path and the last
    ``tail_lines`` lines of output. A program that cannot be started is a ``BitnetError`` too.
    """
    cmd = [str(c) for c in cmd]
    cmd_text = shlex.join(cmd)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {cmd_text}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1,
            )
        except OSError as e:
            raise BitnetError(f"{what} failed: could not start `{cmd_text}`: {e}") from e
        with proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                if status is not None:
                    status(line.rstrip("\n"))
        log.write(f"[exit code {proc.returncode}]\n")
    if proc.returncode != 0:
        shown = "\n".join(f"    {line}" for line in tail)
        raise BitnetError(
            f"{what} failed: `{cmd_text}` exited with code {proc.returncode} "
            f"(full log: {display_path(log_path)}); last lines of its output:\n{shown}"
        )


class LiveLine:
    """Progress of a long command, shown from its output lines. On a terminal, one line that
    rewrites itself (``\r``) with each output line; elsewhere (logs, CI, captured output), no
    carriage-return noise but no silence either: the lines that count steps, as Ninja's
    ``[12/40] Building CXX object ...``, each on a line of its own. Use as a ``status`` callback of
    ``run_logged`` and call ``clear()`` when the step ends."""

    STEP_LINE = re.compile(r"\[[1-9]\d*/\d+\] ")  # not Ninja's "[0/2] Re-checking globbed directories"

    def __init__(self, prefix: str = "      ") -> None:
        self.prefix = prefix
        self.tty = sys.stderr.isatty()
        self.width = shutil.get_terminal_size((80, 20)).columns - 1

    def __call__(self, line: str) -> None:
        line = line.strip()
        if self.tty and line:
            sys.stderr.write("\r\x1b[K" + (self.prefix + line)[: self.width])
            sys.stderr.flush()
        elif not self.tty and self.STEP_LINE.match(line):
            sys.stderr.write(self.prefix + line + "\n")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def run_tool(cmd: Sequence[str | os.PathLike], name: str) -> int:
    """Run one of the engine's tools with this terminal's stdio and return its exit code.

    Ctrl-C reaches the tool too (same terminal), which decides what it means (bitnet-cli -cnv
    stops the answer and goes on): keep waiting for it, however many times it is pressed, instead
    of dying here with a traceback. A tool killed by a signal is reported like a shell does
    (128 + signal number).
    """
    proc = subprocess.Popen([str(c) for c in cmd])
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:
            continue
    if rc < 0:
        if -rc != signal.SIGINT:
            click.echo(f"error: {name} was killed by signal {signal.Signals(-rc).name}", err=True)
        return 128 - rc
    return rc


def read_json(path: Path, required: bool = True) -> dict:
    """A JSON file of a checkpoint as a dict ({} when missing and not required); bad input is a
    click.ClickException naming the file."""
    if not path.is_file():
        if required:
            raise click.ClickException(f"{path} not found: is {path.parent} a Hugging Face checkpoint directory?")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{path} is not valid JSON: {e}") from None
