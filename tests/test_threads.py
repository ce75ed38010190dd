"""Threads: the pool runs every chunk exactly once under oversubscription (tests/cpp/test_threadpool),
logits are the same bits for every thread count, the default thread count is the CPUs this process
may use (affinity mask, cgroup quota), and -t above it warns, far above it is refused. No timings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_threadpool_chunks_once(engine_bin):
    r = subprocess.run([engine_bin / "test_threadpool"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"test_threadpool failed:\n{r.stdout}\n{r.stderr}"


@pytest.mark.parametrize("flash_attn", [True, False])
def test_logits_same_bits_for_any_thread_count(engine_lib, tiny_gguf, flash_attn):
    from bitnet.bindings import Context, Model

    # Long enough that the matmuls of this small model are cut into pieces (shorter ones run on
    # the caller alone), with a token count that 2, 3 and 8 do not divide.
    prompt = [(7 * i + 3) % 200 + 1 for i in range(301)]
    out = {}
    with Model(tiny_gguf) as model:
        for t in (1, 2, 3, 8):
            with Context(model, n_ctx=512, n_threads=t, flash_attn=flash_attn) as ctx:
                assert ctx._lib.bitnet_context_n_threads(ctx._p) == t
                rows = [ctx.decode(prompt, logits_all=True)]
                for tok in (5, 9, 11):  # then one token at a time
                    rows.append(ctx.decode([tok]))
                out[t] = np.concatenate(rows)
    for t in (2, 3, 8):
        diff = np.abs(out[t] - out[1]).max()
        assert np.array_equal(out[t].view(np.uint32), out[1].view(np.uint32)), f"-t {t}: max |diff| {diff}"


def test_default_n_threads_in_range(engine_lib):
    from bitnet.bindings import default_n_threads, load_library

    n = default_n_threads()
    assert 1 <= n <= os.cpu_count()
    assert n <= len(os.sched_getaffinity(0))
    assert load_library().bitnet_max_n_threads() == min(4 * n, 1024)


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_default_n_threads_honors_taskset(engine_bin, engine_lib, tiny_gguf):
    code = "from bitnet.bindings import default_n_threads; print(default_n_threads())"
    r = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    r = subprocess.run(["taskset", "-c", "0", engine_bin / "bitnet-bench", "-m", tiny_gguf, "-p", "0", "-n", "2",
                        "-r", "1", "-o", "csv"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.strip().splitlines()[-2:]
    assert dict(zip(header.split(","), row.split(",")))["n_threads"] == "1"
    r = subprocess.run(["taskset", "-c", "0", engine_bin / "bitnet-cli", "-m", tiny_gguf, "-p", "hi", "-n", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert ", 1 threads," in r.stderr


def test_thread_count_messages(engine_bin, engine_lib, tiny_gguf):
    from bitnet.bindings import BitnetError, Context, Model, default_n_threads

    usable = default_n_threads()
    most = min(4 * usable, 1024)

    def cli(t):
        return subprocess.run([engine_bin / "bitnet-cli", "-m", tiny_gguf, "-p", "hi", "-n", "1", "-t", str(t)],
                              capture_output=True, text=True, timeout=120)

    r = cli(usable)
    assert r.returncode == 0 and "warning: -t" not in r.stderr
    if usable + 1 <= most:
        r = cli(usable + 1)
        assert r.returncode == 0, r.stderr
        assert [ln for ln in r.stderr.splitlines() if ln.startswith("warning: -t")], r.stderr
    for t in (most + 1, 1025, 100000):
        r = cli(t)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: -t") and "too many threads" in lines[0], r.stderr
    for tool, extra in (("bitnet-bench", []), ("bitnet-perplexity", ["-f", "/dev/null"])):
        r = subprocess.run([engine_bin / tool, "-m", tiny_gguf, *extra, "-t", str(most + 1)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and r.stderr.startswith("error: -t"), r.stderr
    with Model(tiny_gguf) as model:
        with pytest.raises(BitnetError, match="threads is too many"):
            Context(model, n_ctx=16, n_threads=most + 1)
