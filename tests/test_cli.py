"""bitnet-cli as a llama.cpp user reads it: what it says on stderr (progress of long prompts, the
token count of the speed line, the seed line) and what it leaves out of stdout (control tokens,
unless --special). Run on the shipped model, whose greedy text reaches <|end_of_text|> early.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest


def cli(engine_bin: Path, model: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([str(engine_bin / "bitnet-cli"), "-m", str(model), "-t", "1", *args], check=False,
                         capture_output=True, text=True, errors="replace", timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return res


def generation_tokens(stderr: str) -> int:
    m = re.search(r"^generation: +(\d+) tokens? in", stderr, re.M)
    assert m, stderr
    return int(m.group(1))


@pytest.mark.parametrize("n", [1, 2, 7])
def test_speed_line_counts_the_tokens_printed(engine_bin, shipped_gguf, n):
    res = cli(engine_bin, shipped_gguf, "-p", "Create a new", "-n", str(n), "--temp", "0", "--ignore-eos",
              "--no-display-prompt", "--special")
    assert generation_tokens(res.stderr) == n
    pieces = subprocess.run([str(engine_bin / "bitnet-cli"), "-m", str(shipped_gguf), "-p", "Create a new", "-n",
                             str(n + 1), "--temp", "0", "--ignore-eos", "--no-display-prompt", "--special"],
                            capture_output=True, text=True, check=True).stdout
    assert pieces.startswith(res.stdout.rstrip("\n"))  # n tokens of the same greedy text
    assert f"{n} token{'s' if n > 1 else ''} in" in res.stderr


def test_end_of_text_is_not_counted(engine_bin, shipped_gguf):
    """Without --ignore-eos the run stops at <|end_of_text|>: the tokens before it are counted."""
    res = cli(engine_bin, shipped_gguf, "-p", "Create a new", "-n", "200", "--temp", "0", "-c", "256")
    n = generation_tokens(res.stderr)
    assert 0 < n < 200
    longer = cli(engine_bin, shipped_gguf, "-p", "Create a new", "-n", str(n), "--temp", "0", "-c", "256")
    assert longer.stdout == res.stdout and generation_tokens(longer.stderr) == n


def test_control_tokens_are_shown_only_with_special(engine_bin, shipped_gguf):
    args = ["-p", "Create a new", "-n", "120", "--temp", "0", "--ignore-eos", "-c", "256"]
    plain = cli(engine_bin, shipped_gguf, *args).stdout
    special = cli(engine_bin, shipped_gguf, *args, "--special").stdout
    assert "<|end_of_text|>" in special and "<|begin_of_text|>" in special
    assert "<|" not in plain
    assert plain == special.replace("<|end_of_text|>", "").replace("<|begin_of_text|>", "")


def test_greedy_run_prints_no_seed(engine_bin, shipped_gguf):
    greedy = cli(engine_bin, shipped_gguf, "-p", "Create a new", "-n", "2", "--temp", "0")
    assert "seed" not in greedy.stderr and "greedy" in greedy.stderr.splitlines()[0]
    sampled = cli(engine_bin, shipped_gguf, "-p", "Create a new", "-n", "2", "--temp", "0.8", "-s", "42")
    assert "seed 42" in sampled.stderr.splitlines()[0]


def test_long_prompt_reports_progress(engine_bin, shipped_gguf):
    prompt = " ".join(["the list of lines"] * 300)  # well over 1,024 tokens
    res = cli(engine_bin, shipped_gguf, "-p", prompt, "-n", "1", "-c", "2048", "-b", "256", "--no-display-prompt")
    n_prompt = int(re.search(r"prompt eval: (\d+) tokens in", res.stderr).group(1))
    steps = [int(m.group(1)) for m in re.finditer(rf"^prompt eval: (\d+)/{n_prompt} tokens \(", res.stderr, re.M)]
    assert n_prompt > 1024 and steps == [*range(512, n_prompt, 512), n_prompt], res.stderr


def test_short_prompt_reports_no_progress(engine_bin, shipped_gguf):
    res = cli(engine_bin, shipped_gguf, "-p", "Create a new", "-n", "1")
    assert not re.search(r"prompt eval: \d+/", res.stderr), res.stderr
