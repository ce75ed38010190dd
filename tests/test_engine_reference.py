"""The engine against an independent reference: Hugging Face transformers' BitNetForCausalLM
(float32, one thread) on tiny checkpoints made by the dummy-model generator.

Three checkpoint layouts are covered: packed offline codes run by transformers' BitLinear (uint8
codes, weight_scale divided by), the same codes in the layout of the real microsoft/bitnet-b1.58-
2B-4T config (offline AutoBitLinear: weight_scale multiplied; transformers loads it in bf16, so the
reference is cast to float32, which changes no stored value: lossless_check.autobitlinear_in_float32),
and bf16 master weights (ternarized online by transformers' AutoBitLinear, offline by our converter).

Tolerance. Ternary products are exact integers on both sides; what differs is float32 rounding in
the norms, RoPE, softmax and the final rescale, so positions agree to ~1e-6 of the logits' scale
(measured: 2e-7 to 5e-7). But the int8 activation quantizer is a step function: when a value x*s
lies within one float ulp of k+0.5 (the tiny models make exact and near ties common), the two
implementations can round it to different integers, which moves that activation by 1/127 of its
row's absmax. Such a flip changes the logits by up to ~1e-2 of their scale and, once in the KV
cache, persists for later positions. So the check is two-tier:
  - every prompt: max |Δlogit| <= FLIP_TOL * max |logit| (a real bug gives O(1) differences) and the
    same argmax at every position;
  - most prompts: max |Δlogit| <= EXACT_TOL * max |logit|, i.e. agreement to float rounding.
Greedy continuations of 32 tokens must be identical for every prompt.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import EXACT_ATTN, EXACT_ATTN_FLAGS
from utils.lossless_check import autobitlinear_in_float32

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = [
    "The quick brown fox",
    "def main():\n    return",
    "In 1905, Einstein published",
    "Numbers: 1, 2, 3, 4,",
    "Die Katze schläft auf dem Sofa, während",
    "Once upon a time, in a small village,",
    "import numpy as np\nx = np.",
    "Q: What is the capital of France?\nA:",
]
EXACT_TOL = 1e-5
FLIP_TOL = 3e-2


def _reference(ckpt):
    from transformers import BitNetForCausalLM

    torch.set_num_threads(1)
    cfg = json.loads((ckpt / "config.json").read_text())
    kwargs = {}
    if "quantization_config" not in cfg:
        # bf16 master weights: quantize online, as the model was trained.
        from transformers import BitNetQuantConfig

        kwargs["quantization_config"] = BitNetQuantConfig(
            linear_class="autobitlinear", quantization_mode="online"
        )
    model = BitNetForCausalLM.from_pretrained(ckpt, dtype=torch.float32, **kwargs)
    return autobitlinear_in_float32(model).eval()


def _hf_tokenize(ckpt, text):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    return tok.encode(text, add_special_tokens=True).ids


@pytest.fixture(scope="module", params=["packed", "packed-auto", "bf16"])
def case(request, engine_lib, tiny_packed, tiny_packed_auto, tiny_bf16):
    from conftest import convert_to

    ckpt = {"packed": tiny_packed, "packed-auto": tiny_packed_auto, "bf16": tiny_bf16}[request.param]
    return request.param, ckpt, _reference(ckpt), convert_to(ckpt, "i2_s")


def test_logits_match_reference(case):
    from bitnet.bindings import Context, Model

    fmt, ckpt, ref, gguf = case
    errs = []
    with Model(gguf) as m:
        for text in PROMPTS:
            ids = _hf_tokenize(ckpt, text)
            with torch.no_grad():
                want = ref(torch.tensor([ids])).logits[0].numpy()
            with Context(m, n_ctx=256, n_threads=2, **EXACT_ATTN) as ctx:
                got = ctx.decode(ids, logits_all=True)
            assert got.shape == want.shape
            err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
            errs.append(err)
            assert err <= FLIP_TOL, f"{fmt} {text!r}: max |Δlogit| / max |logit| = {err:.2e}"
            # the same argmax at every position
            assert (got.argmax(-1) == want.argmax(-1)).all(), f"{fmt} {text!r}: argmax differs"
    exact = sum(e <= EXACT_TOL for e in errs)
    print(f"\n{fmt}: max |Δlogit| / max |logit| per prompt: " + ", ".join(f"{e:.1e}" for e in errs))
    assert exact > len(errs) // 2, f"{fmt}: only {exact}/{len(errs)} prompts agree to float rounding"


ATTENTION_MODES = {
    "exact": EXACT_ATTN,
    "tiled": {},  # the default: tiled attention over an f32 cache
}


@pytest.mark.parametrize("attn", ATTENTION_MODES)
def test_greedy_continuations_identical(case, attn):
    """32 greedy tokens per prompt, engine vs reference. A divergence is only acceptable where the
    reference itself is at a near-tie (top-1/top-2 margin below what one quantizer flip can move,
    see the module docstring); most prompts must match all the way. The exact attention and the
    tiled one (whose sums differ from torch's by float rounding) are held to the same rule."""
    from bitnet.bindings import Context, Model

    fmt, ckpt, ref, gguf = case
    n_new = 32
    identical, report = 0, []
    with Model(gguf) as m:
        for text in PROMPTS:
            ids = _hf_tokenize(ckpt, text)
            with torch.no_grad():
                out = ref.generate(
                    torch.tensor([ids]), max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                    pad_token_id=0, output_scores=True, return_dict_in_generate=True,
                )
            want = out.sequences[0, len(ids):].tolist()
            with Context(m, n_ctx=256, n_threads=2, **ATTENTION_MODES[attn]) as ctx:
                got = ctx.generate_greedy(ids, n_new)
            if got == want:
                identical += 1
                continue
            j = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
            scores = out.scores[j][0]
            top2 = torch.topk(scores, 2).values
            margin = float(top2[0] - top2[1])
            bound = FLIP_TOL * float(scores.abs().max())
            report.append(f"{text!r}: diverges at token {j}, reference margin {margin:.3g}")
            assert margin <= bound, (
                f"{fmt} {text!r}: greedy continuation differs at token {j} although the reference's "
                f"top-1/top-2 margin there ({margin:.3g}) exceeds what a quantizer flip explains ({bound:.3g})"
            )
    print(f"\n{fmt} {attn}: {identical}/{len(PROMPTS)} greedy continuations identical; " + "; ".join(report))
    assert identical >= len(PROMPTS) - 1, f"{fmt} {attn}: only {identical}/{len(PROMPTS)} identical: " + "; ".join(report)


def test_batched_prompt_equals_token_by_token(engine_lib, tiny_gguf):
    """The KV cache path (one token at a time) and the batched prompt path agree: bit for bit with
    the tiled attention (test_attention.py covers more batch sizes, threads and cache types), to a
    quantizer flip with the exact one, whose summation order follows torch's batch."""
    from bitnet.bindings import Context, Model

    with Model(tiny_gguf) as m:
        ids = m.tokenize("A batch of tokens, evaluated two ways.", add_bos=True)
        for attn in ({}, EXACT_ATTN):
            with Context(m, n_ctx=128, n_threads=2, **attn) as a:
                batched = a.decode(ids, logits_all=True)
            with Context(m, n_ctx=128, n_threads=1, n_batch=3, **attn) as b:
                stepwise = np.concatenate([b.decode([t]) for t in ids])
            if attn:
                np.testing.assert_allclose(batched, stepwise, rtol=0, atol=FLIP_TOL * np.abs(batched).max())
                assert (batched.argmax(-1) == stepwise.argmax(-1)).all()
            else:
                np.testing.assert_array_equal(batched, stepwise)


def test_f32_and_i2s_files_agree(engine_lib, tiny_packed):
    """The same ternary weights stored as F32 and as I2_S give the same logits."""
    from conftest import convert_to
    from bitnet.bindings import Context, Model

    outs = []
    for t in ("f32", "i2_s"):
        with Model(convert_to(tiny_packed, t)) as m, Context(m, n_ctx=64) as ctx:
            outs.append(ctx.decode(_hf_tokenize(tiny_packed, "Same weights, two files"), logits_all=True))
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-4 * np.abs(outs[1]).max())


def test_cli_greedy_text_matches_reference(engine_bin, tiny_packed, tiny_gguf):
    """bitnet-cli end to end: its greedy text is the reference's greedy text."""
    from tokenizers import Tokenizer

    prompt = "The quick brown fox"
    ids = _hf_tokenize(tiny_packed, prompt)
    ref = _reference(tiny_packed)
    with torch.no_grad():
        out = ref.generate(torch.tensor([ids]), max_new_tokens=16, min_new_tokens=16, do_sample=False,
                           pad_token_id=0)
    want = Tokenizer.from_file(str(tiny_packed / "tokenizer.json")).decode(
        out[0, len(ids):].tolist(), skip_special_tokens=False)
    r = subprocess.run(
        [engine_bin / "bitnet-cli", "-m", tiny_gguf, "-p", prompt, "-n", "16", "--temp", "0",
         "--ignore-eos", "-t", "2", *EXACT_ATTN_FLAGS],
        capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode("utf-8", "replace")
    assert text == prompt + want + "\n"
    assert b"tokens/s" in r.stderr
