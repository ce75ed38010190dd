"""Tests of utils/convert_hf_to_gguf.py: GGUF metadata and tensors read back and compared with
the checkpoint (I2_S unpacked by an independent per-element formula), both checkpoint kinds,
the three architectures (bitnet-b1.58, 1bitLLM's bitnet, ternary llama with llama.cpp's Q/K
permutation), quantized embedding types against the gguf package's quantizers, sharded input,
config spellings, and clear errors for bad input."""

from __future__ import annotations

import json
import shutil

import click
import gguf
import ml_dtypes
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.numpy import save_file

from bitnet.convert.hf import convert
from utils.convert_hf_to_gguf import main
from utils.generate_dummy_model import generate
from bitnet.formats.gguf_reader import read_gguf

LINEARS = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
NORMS = {
    "attn_norm": "input_layernorm", "attn_sub_norm": "self_attn.attn_sub_norm",
    "ffn_norm": "post_attention_layernorm", "ffn_sub_norm": "mlp.ffn_sub_norm",
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {fmt: generate(root / fmt, preset="tiny", seed=0, fmt=fmt) for fmt in ("packed", "bf16")}


@pytest.fixture
def packed_copy(ckpt, tmp_path):
    return shutil.copytree(ckpt["packed"], tmp_path / "model")


def _tensors(path):
    with safe_open(str(path / "model.safetensors"), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (path / "config.json").write_text(json.dumps(cfg))


def _i2s_reference_unpack(buf: np.ndarray, out_f: int, in_f: int) -> tuple[np.ndarray, np.float32]:
    """Element i of the row-major matrix lives in block i//128; within the block, value r = i%128
    is in byte r%32 at bit pair (7-6, 5-4, 3-2, 1-0)[r//32]; codes 0, 1, 2 mean -1, 0, +1."""
    i = np.arange(out_f * in_f)
    r = i % 128
    byte = buf[(i // 128) * 32 + r % 32]
    codes = (byte >> (6 - 2 * (r // 32))) & 3
    assert codes.max() <= 2
    scale = buf[out_f * in_f // 4 : out_f * in_f // 4 + 4].view(np.float32)[0]
    divisor = buf[out_f * in_f // 4 + 4 : out_f * in_f // 4 + 8].view(np.float32)[0]
    assert divisor > 0 and abs(float(divisor) * float(scale) - 1) < 1e-6  # the exact divisor
    assert not buf[out_f * in_f // 4 + 8 :].any()  # zero padding after scale and divisor
    return (codes.astype(np.int8) - 1).reshape(out_f, in_f), scale


def _torch_ternary(packed: np.ndarray) -> np.ndarray:
    """Independent unpack of the HF packed layout: stored row j, bits 2i..2i+1 -> row i*R + j."""
    p = torch.from_numpy(packed.astype(np.int32))
    return torch.cat([((p >> (2 * i)) & 3) - 1 for i in range(4)]).to(torch.int8).numpy()


def test_i2s_round_trip_of_packed_checkpoint(ckpt, tmp_path):
    out = convert(ckpt["packed"], tmp_path / "m.gguf", embd_type="f16")
    g = read_gguf(out)
    md = g.metadata
    assert md["general.architecture"] == "bitnet-b1.58"
    assert md["general.file_type"] == 40 and md["general.quantization_version"] == 2
    expected = {
        "context_length": 512, "embedding_length": 256, "block_count": 2, "feed_forward_length": 512,
        "rope.dimension_count": 64, "attention.head_count": 4, "attention.head_count_kv": 2,
        "rope.freq_base": 500000.0, "vocab_size": 1000,
    }
    for key, value in expected.items():
        assert md[f"bitnet-b1.58.{key}"] == value, key
    assert md["bitnet-b1.58.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert md["bitnet-b1.58.hidden_activation"] == "relu2"

    tj = json.loads((ckpt["packed"] / "tokenizer.json").read_text())
    tcfg = json.loads((ckpt["packed"] / "tokenizer_config.json").read_text())
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "llama-bpe"
    tokens = md["tokenizer.ggml.tokens"]
    assert len(tokens) == 1000 and all(tokens[i] == t for t, i in tj["model"]["vocab"].items())
    assert md["tokenizer.ggml.merges"] == [" ".join(m) for m in tj["model"]["merges"]]
    types = md["tokenizer.ggml.token_type"]
    assert set(types[:995]) == {1} and set(types[995:]) == {3}
    assert tokens[md["tokenizer.ggml.bos_token_id"]] == "<|begin_of_text|>"
    assert tokens[md["tokenizer.ggml.eos_token_id"]] == "<|eot_id|>"
    assert tokens[md["tokenizer.ggml.eot_token_id"]] == "<|eot_id|>"
    assert md["tokenizer.ggml.add_bos_token"] is True
    assert md["tokenizer.chat_template"] == tcfg["chat_template"]

    hf = _tensors(ckpt["packed"])
    assert "output.weight" not in g.tensors and len(g.tensors) == 1 + 2 * 11 + 1
    emb = g.tensors["token_embd.weight"]
    assert emb.ne == (256, 1000) and emb.type_id == 1
    # bf16 -> f16 is exact for the generator's embeddings.
    want = hf["model.embed_tokens.weight"].astype(np.float32)
    assert np.array_equal(emb.data.view(np.float16).reshape(1000, 256).astype(np.float32), want)
    norm = g.tensors["output_norm.weight"]
    assert norm.type_id == 0 and np.array_equal(norm.data.view(np.float32), hf["model.norm.weight"].astype(np.float32))
    for layer in range(2):
        for gname, hname in NORMS.items():
            t = g.tensors[f"blk.{layer}.{gname}.weight"]
            assert t.type_id == 0
            want = hf[f"model.layers.{layer}.{hname}.weight"].astype(np.float32)
            assert np.array_equal(t.data.view(np.float32), want)
        for gname, hname in LINEARS.items():
            t = g.tensors[f"blk.{layer}.{gname}.weight"]
            weight = hf[f"model.layers.{layer}.{hname}.weight"]
            out_f, in_f = weight.shape[0] * 4, weight.shape[1]
            assert t.type_id == 36 and t.ne == (in_f, out_f)
            tern, scale = _i2s_reference_unpack(np.asarray(t.data), out_f, in_f)
            assert np.array_equal(tern, _torch_ternary(weight))
            ws = hf[f"model.layers.{layer}.{hname}.weight_scale"].astype(np.float32)[0]
            assert scale == np.float32(1.0) / ws


def test_bf16_master_checkpoint(ckpt, tmp_path):
    g = read_gguf(convert(ckpt["bf16"], tmp_path / "m.gguf"))
    hf = _tensors(ckpt["bf16"])
    for layer in range(2):
        for gname, hname in LINEARS.items():
            w = torch.from_numpy(hf[f"model.layers.{layer}.{hname}.weight"].astype(np.float32))
            s = 1.0 / w.abs().mean().clamp(min=1e-5)  # transformers' WeightQuant
            t = g.tensors[f"blk.{layer}.{gname}.weight"]
            tern, scale = _i2s_reference_unpack(np.asarray(t.data), *w.shape)
            assert np.array_equal(tern, (w * s).round().clamp(-1, 1).to(torch.int8).numpy())
            assert scale == pytest.approx(1.0 / s.item(), rel=1e-6)


@pytest.mark.parametrize("outtype", ["f16", "f32"])
def test_float_outtypes_hold_dequantized_ternary(ckpt, tmp_path, outtype):
    out = convert(ckpt["packed"], tmp_path / "m.gguf", outtype=outtype)
    hf = _tensors(ckpt["packed"])
    reader = gguf.GGUFReader(out)  # the gguf package reads F16/F32 files: an independent check
    tensors = {t.name: t for t in reader.tensors}
    dtype = np.float16 if outtype == "f16" else np.float32
    q = tensors["blk.0.attn_q.weight"]
    assert q.tensor_type == (gguf.GGMLQuantizationType.F16 if outtype == "f16" else gguf.GGMLQuantizationType.F32)
    scale = np.float32(1.0) / hf["model.layers.0.self_attn.q_proj.weight_scale"].astype(np.float32)[0]
    want = (_torch_ternary(hf["model.layers.0.self_attn.q_proj.weight"]) * scale).astype(dtype)
    assert np.array_equal(np.asarray(q.data).reshape(256, 256), want)
    emb = tensors["token_embd.weight"]
    assert emb.tensor_type == (gguf.GGMLQuantizationType.F16 if outtype == "f16" else gguf.GGMLQuantizationType.F32)
    assert int(reader.fields["general.file_type"].parts[-1][0]) == {"f16": 1, "f32": 0}[outtype]


def test_sharded_checkpoint_and_rope_parameters(packed_copy, ckpt, tmp_path):
    tensors = _tensors(packed_copy)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(packed_copy / file), metadata={"format": "pt"})
    (packed_copy / "model.safetensors").unlink()
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (packed_copy / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _edit_config(packed_copy, rope_theta=None, rope_parameters={"rope_theta": 10000.0, "rope_type": "default"})

    sharded = read_gguf(convert(packed_copy, tmp_path / "sharded.gguf"))
    single = read_gguf(convert(ckpt["packed"], tmp_path / "single.gguf"))
    assert sharded.metadata["bitnet-b1.58.rope.freq_base"] == 10000.0
    for name, t in single.tensors.items():
        assert np.array_equal(sharded.tensors[name].data, t.data), name


def test_k_not_multiple_of_128(tmp_path):
    """bitnet_b1_58-3B's FFN of 8640 in miniature: ffn_down's rows of 320 values are two full I2_S
    blocks (layout unchanged) and a third holding 64 values and 64 zero weights (code 1)."""
    model = generate(tmp_path / "odd", preset="tiny", ffn=320, layers=1)
    g = read_gguf(convert(model, tmp_path / "m.gguf"))
    t = g.tensors["blk.0.ffn_down.weight"]
    assert t.type_id == 36 and t.ne == (320, 256)
    buf = np.asarray(t.data)
    assert buf.size == 256 * 3 * 32 + 32
    want = _torch_ternary(_tensors(model)["model.layers.0.mlp.down_proj.weight"])
    padded = np.zeros((256, 384), dtype=np.int8)
    padded[:, :320] = want
    # The per-element formula of a block-aligned matrix applies to the padded one.
    tern, _ = _i2s_reference_unpack(buf, 256, 384)
    assert np.array_equal(tern, padded)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "llama"}, "model_type 'llama'"),
        ({"hidden_act": "silu"}, "hidden_act 'silu'"),
        ({"intermediate_size": 1024}, r"gate_proj.weight has shape \[128, 256\], config.json implies \[256, 256\]"),
    ],
)
def test_bad_config(packed_copy, tmp_path, change, message):
    _edit_config(packed_copy, **change)
    with pytest.raises(click.ClickException, match=message):
        convert(packed_copy, tmp_path / "m.gguf")


def test_missing_files_and_tensors(packed_copy, tmp_path):
    tensors = _tensors(packed_copy)
    del tensors["model.layers.1.mlp.up_proj.weight_scale"]
    save_file(tensors, str(packed_copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(click.ClickException, match=r"model\.layers\.1\.mlp\.up_proj\.weight_scale missing"):
        convert(packed_copy, tmp_path / "m.gguf")
    (packed_copy / "config.json").unlink()
    with pytest.raises(click.ClickException, match="config.json not found"):
        convert(packed_copy, tmp_path / "m.gguf")


def test_failure_while_writing_leaves_no_file(packed_copy, tmp_path):
    tensors = _tensors(packed_copy)
    tensors["model.layers.1.mlp.up_proj.weight"][3, 5] = 0xFF  # reserved code 3
    save_file(tensors, str(packed_copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(click.ClickException, match=r"up_proj\.weight holds the unused ternary code 3"):
        convert(packed_copy, tmp_path / "m.gguf")
    assert list(tmp_path.glob("m.gguf*")) == []


def test_cli(packed_copy):
    runner = CliRunner()
    result = runner.invoke(main, [str(packed_copy), "--outtype", "f16", "--embd-type", "f32"])
    assert result.exit_code == 0, result.output
    g = read_gguf(packed_copy / "ggml-model-f16.gguf")
    assert g.tensors["token_embd.weight"].type_id == 0 and g.metadata["general.file_type"] == 1
    result = runner.invoke(main, [str(packed_copy / "nope")])
    assert result.exit_code != 0 and "is not a directory" in result.output


def test_reader_rejects_truncated_file(ckpt, tmp_path):
    data = convert(ckpt["packed"], tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="past the end"):
        read_gguf(tmp_path / "cut.gguf")
    assert ml_dtypes  # imported so numpy knows bfloat16 in _tensors


def test_embedding_rows_beyond_the_tokenizer_become_unused_tokens(packed_copy, tmp_path):
    tensors = _tensors(packed_copy)
    emb = tensors["model.embed_tokens.weight"]
    tensors["model.embed_tokens.weight"] = np.concatenate([emb, emb[:24]])
    save_file(tensors, str(packed_copy / "model.safetensors"), metadata={"format": "pt"})
    _edit_config(packed_copy, vocab_size=1024)
    md = read_gguf(convert(packed_copy, tmp_path / "m.gguf")).metadata
    assert len(md["tokenizer.ggml.tokens"]) == md["bitnet-b1.58.vocab_size"] == 1024
    assert md["tokenizer.ggml.tokens"][1023] == "[PAD1023]" and md["tokenizer.ggml.token_type"][1023] == 5
    tensors["model.embed_tokens.weight"] = emb[:512]
    save_file(tensors, str(packed_copy / "model.safetensors"), metadata={"format": "pt"})
    _edit_config(packed_copy, vocab_size=512)
    with pytest.raises(click.ClickException, match="token id 999 but config.json says vocab_size 512"):
        convert(packed_copy, tmp_path / "m.gguf")


@pytest.fixture(scope="module")
def arch_ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("archs")
    return {
        "llama": generate(root / "llama", preset="llama-tiny", seed=3),
        "bitnet": generate(root / "bitnet", preset="bitnet-tiny", seed=3, layers=1),
    }


def test_llama_arch_permutes_q_and_k_for_norm_rope(arch_ckpts, tmp_path):
    """A Falcon3-style checkpoint (LlamaForCausalLM + bitnet quantization, head_dim 96 with hidden
    256 / 4 heads, GQA, untied lm_head) becomes arch "llama" with Wq/Wk rows in llama.cpp's order."""
    ckpt = arch_ckpts["llama"]
    g = read_gguf(convert(ckpt, tmp_path / "m.gguf", embd_type="f16"))
    md, hf = g.metadata, _tensors(ckpt)
    assert md["general.architecture"] == "llama" and md["llama.hidden_activation"] == "silu"
    assert md["llama.attention.key_length"] == md["llama.attention.value_length"] == 96
    assert md["llama.rope.dimension_count"] == 96 and md["llama.attention.head_count_kv"] == 2
    assert not any("sub_norm" in n for n in g.tensors)
    assert np.array_equal(g.tensors["output.weight"].data.view(np.float16).reshape(1000, 256),
                          hf["lm_head.weight"].astype(np.float16))
    for gname, heads in (("attn_q", 4), ("attn_k", 2), ("attn_v", None)):
        hname = LINEARS[gname]
        weight = hf[f"model.layers.1.{hname}.weight"]
        out_f = weight.shape[0] * 4
        tern, _ = _i2s_reference_unpack(np.asarray(g.tensors[f"blk.1.{gname}.weight"].data), out_f, 256)
        want = _torch_ternary(weight)
        if heads:
            # Row r = h*96 + 2i + j of the file is Hugging Face row h*96 + j*48 + i.
            h, i, j = np.meshgrid(np.arange(heads), np.arange(48), np.arange(2), indexing="ij")
            src = (h * 96 + j * 48 + i).reshape(-1)
            want = want[src]
        assert np.array_equal(tern, want), gname


def test_bitnet_arch_from_fp16_masters(arch_ckpts, tmp_path):
    """1bitLLM's layout: fp16 masters ternarized with its weight_quant, sub-norms renamed."""
    ckpt = arch_ckpts["bitnet"]
    g = read_gguf(convert(ckpt, tmp_path / "m.gguf", embd_type="f16"))
    md, hf = g.metadata, _tensors(ckpt)
    assert md["general.architecture"] == "bitnet" and md["bitnet.hidden_activation"] == "silu"
    assert md["bitnet.rope.freq_base"] == 10000.0 and "output.weight" not in g.tensors
    for gname, hname in (("attn_sub_norm", "self_attn.inner_attn_ln"), ("ffn_sub_norm", "mlp.ffn_layernorm")):
        want = hf[f"model.layers.0.{hname}.weight"].astype(np.float32)
        assert np.array_equal(g.tensors[f"blk.0.{gname}.weight"].data.view(np.float32), want)
    w = torch.from_numpy(hf["model.layers.0.mlp.gate_proj.weight"].astype(np.float32))
    s = 1 / w.abs().mean().clamp(min=1e-5)  # 1bitLLM's utils_quant.weight_quant
    tern, scale = _i2s_reference_unpack(np.asarray(g.tensors["blk.0.ffn_gate.weight"].data), 512, 384)
    assert np.array_equal(tern, (w * s).round().clamp(-1, 1).to(torch.int8).numpy())
    assert scale == pytest.approx(1 / s.item(), rel=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"quantization_config": None}, "model_type 'llama'"),
    ({"quantization_config": {"quant_method": "bitnet", "use_rms_norm": True}}, "use_rms_norm"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "RoPE scaling"),
])
def test_bad_llama_config(arch_ckpts, tmp_path, change, message):
    model = shutil.copytree(arch_ckpts["llama"], tmp_path / "model")
    _edit_config(model, **change)
    with pytest.raises(click.ClickException, match=message):
        convert(model, tmp_path / "m.gguf")


@pytest.mark.parametrize("embd_type", ["q8_0", "q6_k", "q4_0"])
def test_quantized_embedding_types(arch_ckpts, tmp_path, embd_type):
    """token_embd and the untied output.weight in a ggml quantized type: byte for byte what the
    gguf package's own quantizer makes of the same values, or, for Q6_K (which gguf 0.19 can
    only dequantize), values that gguf's dequantizer reads back within the type's rounding."""
    ckpt = arch_ckpts["llama"]
    g = read_gguf(convert(ckpt, tmp_path / "m.gguf", embd_type=embd_type))
    qtype = getattr(gguf.GGMLQuantizationType, embd_type.upper())
    hf = _tensors(ckpt)
    for name, hname in (("token_embd.weight", "model.embed_tokens.weight"), ("output.weight", "lm_head.weight")):
        t = g.tensors[name]
        assert t.type_id == int(qtype) and t.ne == (256, 1000)
        x = hf[hname].astype(np.float32)
        data = np.asarray(t.data).reshape(1000, -1)
        if qtype == gguf.GGMLQuantizationType.Q6_K:
            back = gguf.quants.dequantize(data, qtype).reshape(x.shape)
            # 6-bit codes under an 8-bit block scale: each value within ~1/32 of its row's range.
            assert np.all(np.abs(back - x) <= np.abs(x).max(axis=1, keepdims=True) / 24), name
            continue
        assert np.array_equal(data, gguf.quants.quantize(x, qtype)), name


@pytest.mark.parametrize("outtype, hidden, expected", [
    ("i2_s", 256, "Q6_K"), ("i2_s", 384, "Q8_0"), ("f16", 256, "F16"), ("f32", 256, "F32"),
])
def test_default_embedding_type(tmp_path, outtype, hidden, expected):
    """i2_s files get a quantized output matrix by default (Q6_K, Q8_0 where rows are not a
    multiple of 256: see default_embd_type); float linears keep a float one."""
    from utils.generate_dummy_model import generate

    ckpt = generate(tmp_path / "ckpt", preset="tiny", hidden=hidden, heads=4, kv_heads=2, layers=1)
    g = read_gguf(convert(ckpt, tmp_path / "m.gguf", outtype=outtype))
    assert gguf.GGMLQuantizationType(g.tensors["token_embd.weight"].type_id).name == expected
