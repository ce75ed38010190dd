"""utils/lossless_check.py: greedy continuations of the engine vs the transformers float32 reference
on prompts drawn from held-out text, on the tiny dummy checkpoint.

The check must pass on the real engine (every divergence at a reference near-tie, most sequences
identical) and must fail on a wrong one: a GGUF of other weights with the same vocabulary diverges
where the reference is nowhere near a tie.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import ROOT, convert_to  # noqa: E402


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """Text from Python's own help topics (always available offline)."""
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("text") / "heldout.txt"
    path.write_text("\n\n".join(topics[k] for k in sorted(topics)[:40]), encoding="utf-8")
    return path


def _check(ckpt, gguf, text, **kw):
    from utils.lossless_check import lossless_check

    return lossless_check(ckpt, gguf, text, threads=2, **kw)


def test_engine_is_lossless(engine_lib, tiny_packed, tiny_gguf, heldout):
    from utils.lossless_check import FLIP_TOL

    n, n_predict = 6, 24
    r = _check(tiny_packed, tiny_gguf, heldout, n_prompts=n, n_predict=n_predict, prompt_tokens=16)
    assert len(r.sequences) == n and r.ref_margins.shape == (n, n_predict)
    for s in r.sequences:
        assert len(s.prompt_ids) == 17  # BOS + the window: the dummy tokenizer adds BOS
        assert len(s.ref_tokens) == len(s.engine_tokens) == n_predict
        assert (s.divergence is None) == (s.ref_tokens == s.engine_tokens)
        if s.divergence is not None:  # the first differing token, with the reference's margin there
            d = s.divergence
            assert s.ref_tokens[:d.position] == s.engine_tokens[:d.position]
            assert (d.ref_token, d.engine_token) == (s.ref_tokens[d.position], s.engine_tokens[d.position])
            assert d.ref_margin == pytest.approx(float(r.ref_margins[d.prompt, d.position]))
    # A divergence is only acceptable where one activation-quantizer flip can move the argmax.
    for d in r.divergences:
        assert d.ref_margin <= FLIP_TOL * d.logit_scale, f"divergence not at a near-tie: {d}"
    # Near-ties are common in the random tiny model (~1 step in 10); flips at them are rarer still.
    assert r.identical >= n - 2, f"only {r.identical}/{n} sequences identical: {r.divergences}"
    assert r.logit_summary()["max_rel_diff"] <= FLIP_TOL
    # The same seed draws the same prompts; another seed other ones.
    again = _check(tiny_packed, tiny_gguf, heldout, n_prompts=2, n_predict=1, prompt_tokens=16)
    assert [s.prompt_ids for s in again.sequences] == [s.prompt_ids for s in r.sequences[:2]]
    other = _check(tiny_packed, tiny_gguf, heldout, n_prompts=2, n_predict=1, prompt_tokens=16, seed=1)
    assert [s.start for s in other.sequences] != [s.start for s in again.sequences]


def test_wrong_weights_are_caught(engine_lib, tiny_packed, tiny_bf16, heldout):
    """Another checkpoint's GGUF (same tokenizer and shapes, other weights) must show divergences
    that no near-tie explains: the check can fail."""
    r = _check(tiny_packed, convert_to(tiny_bf16, "i2_s"), heldout, n_prompts=3, n_predict=8,
               prompt_tokens=16)
    assert r.identical < 3
    assert r.unexplained, "divergences of a wrong model were all classed as near-ties"


def test_cli_json_and_bad_input(engine_lib, tiny_packed, tiny_gguf, heldout, tmp_path):
    script = ROOT / "utils" / "lossless_check.py"
    r = subprocess.run(
        [sys.executable, script, "--model-dir", tiny_packed, "--gguf", tiny_gguf, "--text", heldout,
         "-N", "2", "--n-predict", "4", "--prompt-tokens", "8", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_prompts"] == 2 and len(out["sequences"]) == 2
    assert out["identical"] == sum(s["diverged_at"] is None for s in out["sequences"])
    assert {"min", "median", "near_tie_steps"} <= set(out["margins"])
    assert "prompt 2/2" in r.stderr

    # Bad input: one line naming the problem, exit code 1.
    cases = [
        (["--model-dir", tmp_path / "nope"], "config.json is missing"),
        (["--model-dir", tiny_packed, "--text", tmp_path / "none.txt"], "none.txt not found"),
        (["--model-dir", tiny_packed], "heldout.txt not found"),
    ]
    for args, message in cases:
        r = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
