"""The tiled attention (src/model/attention.cpp, kernels/attn.h) and the KV cache types.

- The kernels against a double-precision evaluation and the row-independence contract, on every
  kernel set (tests/cpp/test_attn.cpp).
- A token's logits do not depend on how it is batched: alone, in batches of 16 or 512, among other
  sequences, on 1, 2 or 3 threads, bit for bit, for every cache type. This is what lossless
  speculative decoding needs (drafted tokens verified in one batch must reproduce one-at-a-time
  decoding), and what the split of a long cache across threads must not break: the keys are cut
  into chunks at fixed positions and the chunks' partial softmaxes merged in order, whoever
  computes them.
- Tiled attention over an f32 cache against the exact (torch-order) attention: float rounding
  only, so logits within one quantizer flip and the same argmax (test_engine_reference.py holds it
  to the transformers reference too); f16 and q8_0 caches within their own rounding.
- Cache types reach every front end, and what cannot work is refused in one line.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import EXACT_ATTN

CACHES = {
    "f32": {},  # the default
    "f16": {"type_k": "f16", "type_v": "f16"},
    "q8_0": {"type_k": "q8_0", "type_v": "q8_0"},
    "q8_0/f16": {"type_k": "q8_0", "type_v": "f16"},
}
FLIP_TOL = 3e-2  # one activation-quantizer flip, relative to max|logit| (test_engine_reference.py)


def test_attention_kernels(engine_bin):
    r = subprocess.run([engine_bin / "test_attn"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all attention kernel tests passed" in r.stdout


def test_attention_kernels_scalar(engine_bin):
    r = subprocess.run([engine_bin / "test_attn"], capture_output=True, text=True, timeout=300,
                       env={"BITNET_ISA": "scalar"})
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def model(engine_lib, tiny_gguf):
    from bitnet.bindings import Model

    with Model(tiny_gguf) as m:
        yield m


def _tokens(m, n, seed=0):
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(0, m.n_vocab, n)]


@pytest.mark.parametrize("cache", CACHES)
def test_a_token_does_not_depend_on_its_batch(model, cache):
    """150 tokens (past two chunks of keys) decoded whole, in batches of 16 and 7, one at a time, on
    1, 2 and 3 threads: every logits row bit-identical."""
    from bitnet.bindings import Context

    toks = _tokens(model, 150)
    runs = {}
    for threads in (1, 2, 3):
        for step in (512, 16, 7, 1):
            with Context(model, n_ctx=256, n_threads=threads, **CACHES[cache]) as ctx:
                rows = [ctx.decode(toks[i:i + step], logits_all=True) for i in range(0, len(toks), step)]
            runs[(threads, step)] = np.concatenate(rows)
    base = runs[(1, 512)]
    for key, got in runs.items():
        assert np.array_equal(got, base), f"{cache}: threads {key[0]}, batches of {key[1]} differ from one batch on one thread"


@pytest.mark.parametrize("cache", ["f32", "q8_0"])
def test_sequences_in_one_batch_equal_each_alone(model, cache):
    """Three sequences of different lengths advanced together (prompts interleaved, then a step of
    drafted-token size for each) equal each sequence decoded alone."""
    from bitnet.bindings import Context

    lens, steps = [90, 5, 140], [4, 16, 1]
    prompts = [_tokens(model, n, seed=s) for s, n in enumerate(lens)]
    more = [_tokens(model, k, seed=10 + s) for s, k in enumerate(steps)]
    alone = []
    for p, q in zip(prompts, more):
        with Context(model, n_ctx=256, n_threads=2, **CACHES[cache]) as ctx:
            alone.append(np.concatenate([ctx.decode(p, logits_all=True), ctx.decode(q, logits_all=True)]))
    with Context(model, n_ctx=256, n_threads=2, n_seq_max=3, **CACHES[cache]) as ctx:
        got = [[], [], []]
        for batch in (prompts, more):
            toks, seqs, pos = [], [], []
            longest = max(len(b) for b in batch)
            for i in range(longest):  # interleaved
                for s, b in enumerate(batch):
                    if i < len(b):
                        toks.append(b[i])
                        seqs.append(s)
                        pos.append(ctx.seq_length(s) + i)
            logits = ctx.decode_batch(toks, seqs, pos, want_logits=[1] * len(toks))
            for row, s in zip(logits, seqs):
                got[s].append(row)
    for s in range(3):
        assert np.array_equal(np.stack(got[s]), alone[s]), f"{cache}: sequence {s} differs from itself alone"


@pytest.mark.parametrize("cache", CACHES)
def test_tiled_attention_against_the_exact_one(model, cache):
    """Tiled attention against the exact attention over an f32 cache, 200 tokens: the f32 cache to a
    quantizer flip with the same argmax everywhere; f16 and q8_0 caches, which round K and V, to a
    few flips (their greedy agreement on real text is measured by utils/lossless_check.py)."""
    from bitnet.bindings import Context

    toks = _tokens(model, 200, seed=3)
    with Context(model, n_ctx=256, n_threads=2, **EXACT_ATTN) as ctx:
        want = ctx.decode(toks, logits_all=True)
    with Context(model, n_ctx=256, n_threads=2, **CACHES[cache]) as ctx:
        got = ctx.decode(toks, logits_all=True)
    rel = np.abs(got - want).max(axis=1) / np.abs(want).max()
    if cache == "f32":
        assert rel.max() <= FLIP_TOL, f"max |Δlogit| / max|logit| = {rel.max():.2e}"
        # float rounding alone: most positions agree to ~1e-6, the rest are quantizer flips
        assert np.mean(rel <= 1e-5) >= 0.8, f"only {np.mean(rel <= 1e-5):.0%} of positions agree to float rounding"
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.98
    else:
        assert rel.max() <= 4 * FLIP_TOL, f"{cache}: max |Δlogit| / max|logit| = {rel.max():.2e}"
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_exact_attention_needs_an_f32_cache(model):
    from bitnet.bindings import BitnetError, Context

    with pytest.raises(BitnetError, match=r"exact attention .*-ctk f32 -ctv f32"):
        Context(model, n_ctx=64, type_k="f16", type_v="f32", flash_attn=False)
    with pytest.raises(BitnetError, match="not a KV cache type"):
        Context(model, n_ctx=64, type_k="q4_0")


def test_cli_cache_flags(engine_bin, tiny_gguf):
    """-ctk/-ctv/-fa reach bitnet-cli: the exact and the tiled f32 paths give the same greedy text on
    this prompt; a bad type and the exact path over f16 are one-line errors."""
    def cli(*flags):
        return subprocess.run([engine_bin / "bitnet-cli", "-m", tiny_gguf, "-p", "The quick brown fox", "-n", "12",
                               "--temp", "0", "--ignore-eos", "-t", "2", *flags],
                              capture_output=True, timeout=120)

    outs = {name: cli(*f) for name, f in {
        "exact": ["-fa", "off", "-ctk", "f32", "-ctv", "f32"], "fast": ["-ctk", "f32", "-ctv", "f32"],
        "q8_0": ["-ctk", "q8_0", "-ctv", "q8_0"]}.items()}
    for name, r in outs.items():
        assert r.returncode == 0, f"{name}: {r.stderr.decode()}"
    assert outs["exact"].stdout == outs["fast"].stdout
    for flags, word in ((["-ctk", "q4"], "expected f32, f16 or q8_0"), (["-fa", "off", "-ctv", "f16"], "exact attention"),
                        (["-fa", "maybe"], "expected on or off")):
        r = cli(*flags)
        assert r.returncode == 1
        lines = r.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0], lines


def test_bench_depth_and_cache_lists(engine_bin, tiny_gguf):
    """bitnet-bench -d, -gp and cache lists: one row per (cache, depth, test), named as llama-bench
    names them."""
    import json

    r = subprocess.run([engine_bin / "bitnet-bench", "-m", tiny_gguf, "-p", "16", "-n", "4", "-d", "0,40",
                        "-gp", "64,4", "-ctk", "f16,q8_0", "-ctv", "f16", "-r", "1", "-t", "1", "-o", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["results"]
    got = {(x["kv"], x["test"]) for x in rows}
    for kv in ("f16", "q8_0/f16"):
        for test in ("pp16", "tg4", "pp16 @ d40", "tg4 @ d40", "tg4 @ d64"):
            assert (kv, test) in got, (kv, test, sorted(got))
    assert all(x["avg_ts"] > 0 for x in rows)
    assert {x["n_depth"] for x in rows} == {0, 40, 64}
