"""The trained model that ships in models/ (utils/train_tiny_model.py): converted by the project's
own converter, it must run losslessly in the engine — held-out perplexity equal to transformers'
to 4+ significant digits, greedy continuations identical (the lossless protocol on a small N) —
and its greedy text must be the reference's."""

from __future__ import annotations

import shutil

import pytest

from utils.common import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "heldout.txt").is_file(),
                                reason=f"{DEFAULT_MODEL_DIR} is not a trained model with held-out text")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A copy of the shipped checkpoint with its i2_s GGUF (the checkout stays untouched)."""
    from conftest import convert_to

    ckpt = tmp_path_factory.mktemp("shipped") / DEFAULT_MODEL_DIR.name
    shutil.copytree(DEFAULT_MODEL_DIR, ckpt, ignore=shutil.ignore_patterns("*.gguf", ".cache"))
    return ckpt, convert_to(ckpt, "i2_s")


def test_heldout_perplexity_matches_transformers(engine_lib, shipped):
    from tokenizers import Tokenizer

    from test_perplexity import reference_ppl
    from utils.perplexity import perplexity

    ckpt, gguf = shipped
    n_ctx, n_chunks = 128, 6
    ppl, pm = perplexity(gguf, ckpt / "heldout.txt", ctx_size=n_ctx, threads=2, chunks=n_chunks)
    ids = Tokenizer.from_file(str(ckpt / "tokenizer.json")).encode(
        (ckpt / "heldout.txt").read_text(encoding="utf-8")).ids
    want, want_pm, _ = reference_ppl(ckpt, ids, n_ctx, n_chunks)
    # Agreement is limited by int8 quantizer flips (see test_engine_reference.py): on this trained
    # model 1-ulp differences in RoPE/attention flip a near-tie every ~45 tokens, each moving that
    # token's logits by ~1e-3 relative. Measured: 1e-5 to 3e-4 depending on the window.
    assert abs(ppl - want) / want < 1e-3, (ppl, want)
    assert abs(pm - want_pm) / want_pm < 1e-2


def test_lossless_on_heldout_prompts(engine_lib, shipped):
    from utils.lossless_check import lossless_check

    ckpt, gguf = shipped
    r = lossless_check(ckpt, gguf, ckpt / "heldout.txt", n_prompts=6, n_predict=48, threads=2)
    assert not r.unexplained, f"divergences not at a reference near-tie: {r.unexplained}"
    assert r.identical >= 5, f"only {r.identical}/6 identical: {r.divergences}"
