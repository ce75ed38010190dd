"""A batch gives the same bits as one token at a time (what lossless speculative decoding stands on).

For every weight layout the engine reads (i2_s, tl1, tl2, llama.cpp's TQ1_0 / TQ2_0), every type
of the embedding / output matrix, and every kernel set this CPU runs (BITNET_ISA, one process per
set since the engine picks its kernels once): the logits of 40 tokens evaluated in batches of 1 to
16 tokens (on 2 threads; 1, 7 and 16 on 1 and 3 threads), and of three sequences advanced together in one batch, are
bit-identical to evaluating the tokens one at a time on one thread.

Why it can hold exactly: the ternary matrix products are integer sums, whatever the batch; the
float kernels (Q8_0 / Q6_K / Q4_0 / f16 / f32 output matrices, attention) compute each row by the
same operations in the same order whether they run as a GEMV or inside a GEMM tile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

N_TOKENS = 40
THREADS = (1, 2, 3)
# every batch size on 2 threads, a few on the others (the thread count only changes how rows and
# columns are split, which the sizes 1, 7 and 16 already cover)
BATCH_SIZES = {1: (1, 7, 16), 2: range(1, 17), 3: (1, 7, 16)}


def _tokens(n_vocab: int, n: int, seed: int) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, n_vocab, n)]


def check_file(path: str) -> list[str]:
    """Runs in a subprocess with BITNET_ISA set: every way of batching against one token at a time.
    Returns the differences found (empty when every logit agrees bit for bit)."""
    from bitnet.bindings import Context, Model

    problems = []
    with Model(path) as model:
        toks = _tokens(model.n_vocab, N_TOKENS, seed=1)
        with Context(model, n_ctx=128, n_threads=1) as ctx:
            want = np.concatenate([ctx.decode([t], logits_all=True) for t in toks])
        for threads in THREADS:
            for b in BATCH_SIZES[threads]:
                with Context(model, n_ctx=128, n_threads=threads) as ctx:
                    got = np.concatenate([ctx.decode(toks[i:i + b], logits_all=True)
                                          for i in range(0, len(toks), b)])
                if not np.array_equal(got, want):
                    bad = np.flatnonzero(np.any(got != want, axis=1))
                    problems.append(f"{threads} thread(s), batches of {b}: positions {bad[:8].tolist()} differ "
                                    f"(max |Δ| {np.abs(got - want).max():.3g})")
        # Three sequences in one batch: one prompt each (interleaved), then drafted-size steps.
        seqs = [_tokens(model.n_vocab, n, seed=10 + s) for s, n in enumerate((23, 5, 31))]
        alone = []
        for s in seqs:
            with Context(model, n_ctx=128, n_threads=1) as ctx:
                alone.append(np.concatenate([ctx.decode([t], logits_all=True) for t in s]))
        for threads in THREADS:
            with Context(model, n_ctx=128, n_threads=threads, n_seq_max=3) as ctx:
                got = [[], [], []]
                done = [0, 0, 0]
                for step in (9, 16, 3, 7):
                    toks_b, seq_b, pos_b = [], [], []
                    for i in range(step):
                        for s, sq in enumerate(seqs):
                            if done[s] + i < len(sq):
                                toks_b.append(sq[done[s] + i])
                                seq_b.append(s)
                                pos_b.append(done[s] + i)
                    if not toks_b:
                        break
                    rows = ctx.decode_batch(toks_b, seq_b, pos_b, want_logits=[1] * len(toks_b))
                    for row, s in zip(rows, seq_b):
                        got[s].append(row)
                    done = [min(len(sq), d + step) for sq, d in zip(seqs, done)]
            for s in range(3):
                if not np.array_equal(np.stack(got[s]), alone[s]):
                    problems.append(f"{threads} thread(s), sequence {s} of 3 in one batch differs from it alone")
    return problems


def _available_isas(engine_bin: Path) -> list[str]:
    r = subprocess.run([engine_bin / "test_kernels", "--print-isa"], capture_output=True, text=True,
                       env={**os.environ, "BITNET_ISA": "?"}, timeout=60)
    line = r.stderr.split("available: ", 1)[1]
    return [s.strip() for s in line.split(")")[0].split(",")]


@pytest.fixture(scope="module")
def files(engine_lib, tiny_packed, tmp_path_factory):
    from test_foreign_gguf import llama_cpp_tq, rewrite

    from conftest import convert_to
    from bitnet.convert.hf import convert

    root = tmp_path_factory.mktemp("batch")
    out = {f"i2_s+{e}": convert(tiny_packed, root / f"i2s-{e}.gguf", embd_type=e)
           for e in ("q6_k", "q8_0", "q4_0", "f16", "f32")}
    out["tl1"] = convert_to(tiny_packed, "tl1")
    out["tl2"] = convert_to(tiny_packed, "tl2")
    base = out["i2_s+q6_k"]
    arch = "bitnet"
    out["tq2_0"] = rewrite(base, root / "tq2_0.gguf", arch, llama_cpp_tq(gguf.GGMLQuantizationType.TQ2_0, False))
    out["tq1_0"] = rewrite(base, root / "tq1_0.gguf", arch, llama_cpp_tq(gguf.GGMLQuantizationType.TQ1_0, True))
    return out


@pytest.mark.parametrize("layout", ["i2_s+q6_k", "i2_s+q8_0", "i2_s+q4_0", "i2_s+f16", "i2_s+f32", "tl1", "tl2",
                                    "tq2_0", "tq1_0"])
def test_batch_equals_one_token_at_a_time(engine_bin, files, layout):
    repo = Path(__file__).resolve().parents[1]
    failures = {}
    for isa in _available_isas(engine_bin):
        r = subprocess.run(
            [sys.executable, "-c",
             "import json, sys; sys.path[:0] = sys.argv[1:3]; import test_batch_invariance as t; "
             "print(json.dumps(t.check_file(sys.argv[3])))",
             str(repo / "tests"), str(repo), str(files[layout])],
            capture_output=True, text=True, timeout=600, env={**os.environ, "BITNET_ISA": isa})
        assert r.returncode == 0, f"{layout} [{isa}]: {r.stderr[-2000:]}"
        problems = json.loads(r.stdout.strip().splitlines()[-1])
        if problems:
            failures[isa] = problems
    assert not failures, f"{layout}: " + "; ".join(f"[{isa}] " + "; ".join(p[:4]) for isa, p in failures.items())
