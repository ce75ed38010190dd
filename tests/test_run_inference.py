"""run_inference.py as a user runs it (in a subprocess).

Flag pass-through and exit codes are checked against a stand-in bitnet-cli (a shell script that
records its arguments), so they do not depend on the engine; one test then runs the real engine on
the tiny model and checks that the script's output is exactly what bitnet-cli prints when called
directly with the same settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_inference(*args: str, build_dir: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BITNET_DEBUG"}
    env["BITNET_BUILD_DIR"] = str(build_dir)
    return subprocess.run([sys.executable, str(ROOT / "run_inference.py"), *args], cwd=cwd or ROOT, env=env,
                          check=False, capture_output=True, text=True, timeout=300)


@pytest.fixture
def fake_build(tmp_path) -> Path:
    """A build dir whose bin/bitnet-cli writes its arguments, one per line, to args.txt and exits
    with $FAKE_RC (default 0) — or kills itself with $FAKE_SIGNAL."""
    bin_dir = tmp_path / "fake-build" / "bin"
    bin_dir.mkdir(parents=True)
    cli = bin_dir / "bitnet-cli"
    cli.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > '{tmp_path / 'args.txt'}'\n"
        "echo generated text\n"
        "[ -n \"$FAKE_SIGNAL\" ] && kill -\"$FAKE_SIGNAL\" $$\n"
        "exit ${FAKE_RC:-0}\n")
    cli.chmod(0o755)
    return bin_dir.parent


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")  # only its existence matters to the script
    return path


def recorded_args(fake_build: Path) -> list[str]:
    return (fake_build.parent / "args.txt").read_text().splitlines()


def test_flags_reach_bitnet_cli(fake_build, model_file):
    res = run_inference("-m", str(model_file), "-p", "Hi there", "-n", "16", build_dir=fake_build)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "generated text\n"
    assert recorded_args(fake_build) == [
        "-m", str(model_file), "-p", "Hi there", "-n", "16", "-t", "2", "-c", "0", "--temp", "0.8"]

    res = run_inference("--model", str(model_file), "--prompt", "x", "--n-predict", "-1", "--threads", "3",
                        "--ctx-size", "64", "-temp", "0", "--seed", "0", build_dir=fake_build)
    assert res.returncode == 0, res.stderr
    assert recorded_args(fake_build) == [
        "-m", str(model_file), "-p", "x", "-n", "-1", "-t", "3", "-c", "64", "--temp", "0.0", "--seed", "0"]


def test_chat_runs_on_the_package_as_bitnet_cli_chats(engine_bin, shipped_gguf):
    """-cnv runs in Python (bitnet/repl.py), not in bitnet-cli: fed the same lines through a pipe,
    it prints what bitnet-cli -cnv prints, a system prompt and a chat template given or not."""
    lines = "Create a new list\n\nWhat does it return?\n/exit\nnever read\n"
    for extra in ([], ["-p", "You document Python."], ["--chat-template", "chatml"]):
        settings = ["-m", str(shipped_gguf), "-n", "10", "-t", "1", "-c", "256", *extra]
        res = subprocess.run([sys.executable, str(ROOT / "run_inference.py"), "-cnv", "-temp", "0", *settings],
                             input=lines, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "BITNET_BUILD_DIR": str(engine_bin.parent)})
        assert res.returncode == 0, res.stderr
        direct = subprocess.run([str(engine_bin / "bitnet-cli"), "-cnv", "--temp", "0", *settings], input=lines,
                                capture_output=True, text=True, timeout=300)
        assert res.stdout == direct.stdout and res.stdout.count("> ") == 4, (extra, res.stdout)
        assert "prompt eval:" in res.stderr and "Traceback" not in res.stderr


def test_chat_errors_are_one_line(engine_bin, shipped_gguf, tmp_path):
    env = {**os.environ, "BITNET_BUILD_DIR": str(engine_bin.parent)}
    # a model that exists (a fresh clone has no GGUF in models/ until setup runs)
    model = ["-m", str(shipped_gguf)]
    for args, message in ((["-m", str(tmp_path / "nope.gguf")], "not found"),
                          (model + ["--chat-template", "vicuna"], "--chat-template"), (model + ["-n", "0"], "-n 0")):
        res = subprocess.run([sys.executable, str(ROOT / "run_inference.py"), "-cnv", *args], input="hi\n",
                             capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode in (1, 2) and message in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert "> " not in res.stdout


def test_chat_template_needs_chat_mode(fake_build, model_file):
    res = run_inference("-m", str(model_file), "--chat-template", "llama3", build_dir=fake_build)
    assert res.returncode == 2 and "add -cnv" in res.stderr and "Traceback" not in res.stderr
    assert not (fake_build.parent / "args.txt").exists()


def test_exit_code_of_bitnet_cli_is_returned(fake_build, model_file, monkeypatch):
    monkeypatch.setenv("FAKE_RC", "3")
    assert run_inference("-m", str(model_file), build_dir=fake_build).returncode == 3


def test_killed_bitnet_cli_is_reported(fake_build, model_file, monkeypatch):
    monkeypatch.setenv("FAKE_SIGNAL", "TERM")
    res = run_inference("-m", str(model_file), build_dir=fake_build)
    assert res.returncode == 128 + 15
    assert "killed by signal SIGTERM" in res.stderr


def test_missing_build(tmp_path, model_file):
    res = run_inference("-m", str(model_file), build_dir=tmp_path / "no-build")
    assert res.returncode == 1
    assert "the engine is not built" in res.stderr and "run python setup_env.py" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_model(fake_build, tmp_path):
    res = run_inference("-m", str(tmp_path / "nope.gguf"), build_dir=fake_build)
    assert res.returncode == 1
    assert "nope.gguf not found" in res.stderr and "setup_env.py --model-dir DIR" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (fake_build.parent / "args.txt").exists()


def test_bad_flag_values(fake_build, model_file):
    for args in (["-t", "0"], ["-n", "-2"], ["-temp", "-1"], ["--seed", "x"]):
        res = run_inference("-m", str(model_file), *args, build_dir=fake_build)
        assert res.returncode == 2, (args, res.stderr)
        assert "Invalid value" in res.stderr and "Traceback" not in res.stderr


def test_real_generation_matches_bitnet_cli(engine_bin, tiny_gguf):
    settings = ["-m", str(tiny_gguf), "-p", "Once upon a time", "-n", "12", "-t", "2", "-c", "256"]
    res = run_inference(*settings, "-temp", "0", build_dir=engine_bin.parent)
    assert res.returncode == 0, res.stderr
    direct = subprocess.run([str(engine_bin / "bitnet-cli"), *settings, "--temp", "0"], check=False,
                            capture_output=True, text=True, timeout=300)
    assert direct.returncode == 0, direct.stderr
    assert res.stdout == direct.stdout
    assert res.stdout.startswith("Once upon a time") and len(res.stdout) > len("Once upon a time\n")


def test_no_mmap_reaches_bitnet_cli(fake_build, model_file):
    res = run_inference("-m", str(model_file), "--no-mmap", build_dir=fake_build)
    assert res.returncode == 0, res.stderr
    assert recorded_args(fake_build)[-1] == "--no-mmap"
    run_inference("-m", str(model_file), "--mmap", build_dir=fake_build)
    assert "--no-mmap" not in recorded_args(fake_build)


def test_context_rule(engine_bin, shipped_gguf):
    # The shipped model is trained on 256 tokens: the default context is that, without a word;
    # -c 512 works and says it is longer.
    settings = ["-m", str(shipped_gguf), "-p", "Once upon a time", "-n", "4", "-t", "1", "-temp", "0"]
    res = run_inference(*settings, build_dir=engine_bin.parent)
    assert res.returncode == 0 and "warning:" not in res.stderr and "note: context" not in res.stderr, res.stderr
    res = run_inference(*settings, "-c", "512", build_dir=engine_bin.parent)
    assert res.returncode == 0, res.stderr
    assert "warning: a context of 512 tokens is longer than the 256 the model was trained on" in res.stderr
