"""Embeddings of the Qwen3 backbone (microsoft/bitnet-embedding-0.6b's architecture) against
transformers' Qwen3Model with BitNet quantization (`use_rms_norm`: an RMSNorm inside every
BitLinear), float32, one thread, on the qwen3-tiny dummy in two layouts: packed offline codes
(BitLinear) and bf16 master weights (AutoBitLinear, ternarized online).

Tolerance, derived as in test_engine_reference.py. The ternary products are exact integers on
both sides; the rest is float32 rounding, so a unit-norm embedding agrees to ~1e-6 absolute
(EXACT_TOL 1e-5). The int8 activation quantizer is a step function: a value within an ulp of a
rounding tie can go to different integers on the two sides, moving one activation by 1/127 of its
row's absmax; with seven quantizations per layer such flips are more frequent than in the BitNet
models. Measured on qwen3-tiny: 10 of 12 texts agree to 3e-8..6e-8; two differ by 2.2e-3 (cosine
0.99993), and on prefixes of one of them the difference appears at a single length and is gone
one token later: a flip on the pooled token's own path (it feeds no later position), not a drift.
The bf16 layout flips more often (6 of 12 texts under last pooling): transformers' online
AutoBitLinear multiplies dequantized floats, so its ternary products carry float rounding that
ours (exact integers) do not, and the next quantizer sees inputs 1e-7 apart; mean pooling is hit
by a flip at any token of the text. So: texts that agree to float rounding (max |Δ| <= EXACT_TOL;
more than half of them for the packed layout under last/cls pooling, at least a third otherwise)
must have a cosine of at least COS_MIN = 0.99999; every text is within FLIP_TOL of the largest component and at least
COS_FLIP (one flip moves a unit embedding by ~1e-2 at most, so its cosine stays above 0.9995).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bitnet.errors import BitnetError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = [
    "query: what is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "def main():\n    return 42\n",
    "Numbers: 1, 22, 333, 4444 and 12345678.",
    "Die Katze schläft auf dem Sofa, während es regnet.",
    "Съешь же ещё этих мягких французских булок",
    "東京は日本の首都です。",
    "مرحبا بالعالم",
    "emoji 🚀🔥 and   spaces\t\ttabs",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "Ελληνικά: γειά σου κόσμε, हिन्दी: नमस्ते दुनिया",
]
EXACT_TOL = 1e-5
FLIP_TOL = 3e-2
COS_MIN = 0.99999
COS_FLIP = 0.9995


def _checkpoint(root, fmt, seed):
    from utils.generate_dummy_model import generate

    return generate(root / f"qwen3-{fmt}", preset="qwen3-tiny", fmt=fmt, seed=seed)


@pytest.fixture(scope="module")
def qwen3_packed(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("emb"), "packed", 0)


@pytest.fixture(scope="module")
def qwen3_bf16(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("emb"), "bf16", 1)


def _reference(ckpt):
    from utils.lossless_check import autobitlinear_in_float32

    torch.set_num_threads(1)
    return autobitlinear_in_float32(transformers.AutoModel.from_pretrained(ckpt, dtype=torch.float32)).eval()


def _hf_ids(ckpt, text):
    from tokenizers import Tokenizer

    # The tokenizer's post-processor appends <|endoftext|>, whose hidden state is the embedding.
    return Tokenizer.from_file(str(ckpt / "tokenizer.json")).encode(text).ids


def _ref_embed(ref, ids, pooling):
    with torch.no_grad():
        h = ref(torch.tensor([ids])).last_hidden_state[0]
    e = {"last": h[-1], "cls": h[0], "mean": h.mean(0)}[pooling]
    return torch.nn.functional.normalize(e, dim=0).numpy()


@pytest.fixture(scope="module", params=["packed", "bf16"])
def case(request, engine_lib, qwen3_packed, qwen3_bf16):
    from conftest import convert_to

    ckpt = qwen3_packed if request.param == "packed" else qwen3_bf16
    return request.param, ckpt, _reference(ckpt), convert_to(ckpt, "i2_s")


def test_converted_file_has_bitnet_cpp_layout(case):
    from bitnet.formats.gguf_reader import read_gguf

    _, _, _, gguf = case
    g = read_gguf(gguf)
    assert g.metadata["general.architecture"] == "qwen3"
    assert g.metadata["qwen3.pooling_type"] == 3
    assert g.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert "output.weight" not in g.tensors
    for name in ("attn_q_norm_in", "attn_k_norm_in", "attn_v_norm_in", "attn_output_norm_in",
                 "ffn_gate_norm_in", "ffn_up_norm_in", "ffn_down_norm_in", "attn_q_norm", "attn_k_norm"):
        assert f"blk.1.{name}.weight" in g.tensors, name
    assert g.tensors["blk.0.attn_output_norm_in.weight"].ne[0] == 4 * 128  # heads x head_dim


@pytest.mark.parametrize("pooling", ["last", "mean", "cls"])
def test_embeddings_match_reference(case, pooling):
    from bitnet.bindings import Context, Model

    fmt, ckpt, ref, gguf = case
    ids = [_hf_ids(ckpt, t) for t in TEXTS]
    want = np.stack([_ref_embed(ref, i, pooling) for i in ids])
    with Model(gguf) as m, Context(m, n_ctx=512, n_threads=2, n_batch=64, n_seq_max=4) as ctx:
        assert m.pooling == "last"
        got = ctx.embed(ids, pooling=None if pooling == "last" else pooling)
        assert ctx.seq_length(0) == 0  # nothing kept between calls
    errs = np.abs(got - want).max(axis=1)
    cos = (got * want).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    print(f"\n{fmt} {pooling}: max |Δ| per text " + ", ".join(f"{e:.1e}" for e in errs)
          + f"; min cosine {cos.min():.8f}")
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert (errs <= FLIP_TOL * np.abs(want).max(axis=1)).all()
    assert cos.min() >= COS_FLIP, f"{fmt} {pooling}: cosine {cos.min()}"
    exact = errs <= EXACT_TOL
    need = len(TEXTS) // 2 + 1 if fmt == "packed" and pooling != "mean" else len(TEXTS) // 3
    assert exact.sum() >= need, f"{fmt} {pooling}: only {exact.sum()} texts agree to rounding"
    assert cos[exact].min() >= COS_MIN


def test_batched_equals_one_by_one(case):
    """Texts packed into shared multi-sequence batches give each text's result alone, bit for bit."""
    from bitnet.bindings import Context, Model

    _, ckpt, _, gguf = case
    ids = [_hf_ids(ckpt, t) for t in TEXTS]
    with Model(gguf) as m:
        with Context(m, n_ctx=512, n_threads=2, n_batch=32, n_seq_max=5) as ctx:
            together = ctx.embed(ids)
        with Context(m, n_ctx=512, n_threads=2) as ctx:
            alone = np.concatenate([ctx.embed([i]) for i in ids])
            raw = ctx.embed(ids[:2], normalize=False)
    assert np.array_equal(together, alone)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), alone[:2], atol=1e-7)


def test_tokenizer_matches_hf_on_corpus(qwen3_packed, engine_lib):
    from conftest import convert_to
    from test_tokenizer import CORPUS
    from tokenizers import Tokenizer

    from bitnet.bindings import Model

    tok = Tokenizer.from_file(str(qwen3_packed / "tokenizer.json"))
    with Model(convert_to(qwen3_packed, "i2_s")) as m:
        bad = [t for t in CORPUS if m.tokenize(t, parse_special=False) != tok.encode(t, add_special_tokens=False).ids]
    assert not bad, f"{len(bad)} of {len(CORPUS)} texts differ, e.g. {bad[:3]!r}"


def test_bad_input(case, tiny_gguf):
    from bitnet.bindings import Context, Model

    _, _, _, gguf = case
    with Model(gguf) as m, Context(m, n_ctx=64, n_threads=1) as ctx:
        with pytest.raises(BitnetError, match="has no tokens"):
            ctx.embed([[1, 2], []])
        with pytest.raises(BitnetError, match="more than the context"):
            ctx.embed([[1] * 65])
        with pytest.raises(BitnetError, match="outside the vocabulary"):
            ctx.embed([[1, 10**6]])
        with pytest.raises(ValueError, match="pooling"):
            ctx.embed([[1]], pooling="max")
        assert ctx.embed([[1, 2]]).shape == (1, 256)  # usable after the errors
    with Model(tiny_gguf) as m, Context(m, n_ctx=64, n_threads=1) as ctx:
        assert m.pooling == "none"
        with pytest.raises(BitnetError, match="pooling"):
            ctx.embed([[1, 2]])


def test_converter_refuses_use_rms_norm_elsewhere(tiny_packed, tmp_path):
    import shutil

    import click

    from bitnet.convert.hf import convert

    d = tmp_path / "ckpt"
    shutil.copytree(tiny_packed, d, ignore=shutil.ignore_patterns("*.gguf"))
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"]["use_rms_norm"] = True
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(click.ClickException, match="use_rms_norm"):
        convert(d, tmp_path / "x.gguf")


def test_embedding_tool(case, engine_bin, tmp_path):
    """bitnet-embedding appends <|endoftext|> as the checkpoint's tokenizer does, and prints the
    same vectors as the bindings (json and plain, -p and -f)."""
    import subprocess

    from bitnet.bindings import Context, Model

    _, ckpt, _, gguf = case
    texts = TEXTS[:3]
    with Model(gguf) as m, Context(m, n_ctx=512, n_threads=2) as ctx:
        want = ctx.embed([_hf_ids(ckpt, t) for t in texts])
    tool = str(engine_bin / "bitnet-embedding")
    (tmp_path / "texts.txt").write_text("\n".join(t.replace("\n", " ") for t in texts[1:]) + "\n\n")
    args = [tool, "-m", str(gguf), "-t", "2", "-p", texts[0], "-f", str(tmp_path / "texts.txt")]
    out = json.loads(subprocess.run(args + ["--embd-output-format", "json"], capture_output=True, text=True,
                                    check=True).stdout)
    got = np.array([d["embedding"] for d in out["data"]], dtype=np.float32)
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    np.testing.assert_array_equal(got[:2], want[:2])  # text 2 lost its newlines in the file
    plain = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    assert np.array_equal(np.array(plain[0].split(), dtype=np.float32), want[0])
    for bad, msg in ((["-m", str(gguf)], "no text given"), (["-m", str(gguf), "-p", "x", "--pooling", "max"], "--pooling"),
                     (["-m", str(gguf), "-p", "x", "--embd-normalize", "1"], "not supported")):
        r = subprocess.run([tool] + bad, capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.startswith("error:") and msg in r.stderr, r.stderr


def test_bitnet_model_embed(case):
    from bitnet.errors import InvalidArgumentError
    from bitnet.model import BitNetModel

    _, ckpt, _, gguf = case
    with BitNetModel(gguf, n_threads=2) as model:
        got = model.embed(TEXTS[:4])
        with pytest.raises(InvalidArgumentError):
            model.embed([])
        with pytest.raises(InvalidArgumentError):
            model.embed(["x"], pooling="max")
    from bitnet.bindings import Context, Model

    with Model(gguf) as m, Context(m, n_ctx=512, n_threads=2) as ctx:
        assert [m.embedding_tokens(t) for t in TEXTS[:4]] == [_hf_ids(ckpt, t) for t in TEXTS[:4]]
        np.testing.assert_array_equal(got, ctx.embed([_hf_ids(ckpt, t) for t in TEXTS[:4]]))


def test_server_embeddings(qwen3_packed, engine_lib, tmp_path_factory):
    """/v1/embeddings through the official openai client (which asks for base64) and plain HTTP."""
    openai = pytest.importorskip("openai")
    from conftest import convert_to
    from utils.load_test import local_server, request

    from bitnet.bindings import Context, Model

    gguf = convert_to(qwen3_packed, "i2_s")
    with Model(gguf) as m, Context(m, n_ctx=512, n_threads=1) as ctx:
        want = ctx.embed([m.embedding_tokens(t) for t in TEXTS[:3]])
        ids = m.embedding_tokens(TEXTS[0])
    log = tmp_path_factory.mktemp("emb-server") / "server.log"
    with local_server(gguf, ["-c", "512", "-t", "1"], log_path=log) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        r = client.embeddings.create(model=client.models.list().data[0].id, input=TEXTS[:3])
        np.testing.assert_array_equal(np.array([d.embedding for d in r.data], dtype=np.float32), want)
        status, body = request(url, "POST", "/v1/embeddings", {"input": ids, "encoding_format": "float"})
        assert status == 200 and body["data"][0]["embedding"] == [float(x) for x in want[0]]
        assert body["usage"] == {"prompt_tokens": len(ids), "total_tokens": len(ids)}
        status, body = request(url, "POST", "/v1/embeddings", {"input": [ids], "dimensions": 64})
        v = np.array(body["data"][0]["embedding"])
        np.testing.assert_allclose(v, want[0][:64] / np.linalg.norm(want[0][:64]), atol=1e-6)
        for bad, param in (({"input": [[10**6]]}, "input[0]"), ({"input": "x", "dimensions": 999}, "dimensions"),
                           ({"input": "x", "encoding_format": "hex"}, "encoding_format"), ({"input": []}, "input")):
            status, body = request(url, "POST", "/v1/embeddings", bad)
            assert status == 400 and body["error"]["param"] == param, (bad, body)
