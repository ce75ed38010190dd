"""Tests of utils/generate_dummy_model.py: determinism, file layout, and that Hugging Face
transformers loads the checkpoints as quantized BitNet models (the engine's reference)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # transformers' BitLinear is @torch.compile'd
os.environ.setdefault("OMP_NUM_THREADS", "1")

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, BitNetForCausalLM
from transformers.integrations.bitnet import AutoBitLinear, BitLinear, pack_weights

from utils.generate_dummy_model import BOS, EOS_TEXT, EOT, generate
from bitnet.formats.ternary import unpack_hf

FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny preset, seed 0, in both formats: {"packed": dir, "bf16": dir}."""
    root = tmp_path_factory.mktemp("gen")
    return {fmt: generate(root / fmt, preset="tiny", seed=0, fmt=fmt) for fmt in ("packed", "bf16")}


def _tensors(path):
    with safe_open(str(path / "model.safetensors"), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_same_seed_same_bytes(tiny, tmp_path):
    again = generate(tmp_path / "again", preset="tiny", seed=0)
    for name in FILES:
        assert (again / name).read_bytes() == (tiny["packed"] / name).read_bytes(), name
    other = generate(tmp_path / "other", preset="tiny", seed=1)
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()


def test_packed_and_bf16_hold_the_same_ternary_model(tiny):
    packed, master = _tensors(tiny["packed"]), _tensors(tiny["bf16"])
    name = "model.layers.1.mlp.down_proj.weight"
    assert packed[name].dtype == np.uint8 and packed[name].shape == (256 // 4, 512)
    assert master[name].dtype == ml_dtypes.bfloat16 and master[name].shape == (256, 512)
    # Independent reference: transformers' online quantizer (WeightQuant) on the master weights.
    w = torch.from_numpy(master[name].astype(np.float32))
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    t = (w * s).round().clamp(-1, 1).to(torch.int8)
    assert np.array_equal(unpack_hf(packed[name]), t.numpy())
    assert packed[name.replace("weight", "weight_scale")].astype(np.float32)[0] == np.float32(
        s.to(torch.bfloat16).float().item()
    )
    # And the packing is transformers' own.
    assert np.array_equal(pack_weights(t.clone()).numpy(), packed[name])
    for key in packed:
        if not key.endswith(("_proj.weight", "weight_scale")):
            assert np.array_equal(packed[key].view(np.uint16), master[key].view(np.uint16)), key


def test_tokenizer_and_configs(tiny, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny["packed"])
    cfg = json.loads((tiny["packed"] / "config.json").read_text())
    assert len(tok) == cfg["vocab_size"] == 1000
    assert tok.bos_token == BOS and tok.eos_token == EOT
    assert tok("hello world").input_ids[0] == tok.convert_tokens_to_ids(BOS) == cfg["bos_token_id"]
    assert cfg["eos_token_id"] == tok.convert_tokens_to_ids(EOS_TEXT)
    chat = tok.apply_chat_template([{"role": "user", "content": " hi "}], tokenize=False, add_generation_prompt=True)
    assert chat == f"{BOS}User: hi{EOT}Assistant: "
    text = "def f(x):\n    return x ** 2  # squares, 1234567 ✓"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    # A vocabulary larger than training reaches is padded with Llama-3 reserved special tokens.
    big = AutoTokenizer.from_pretrained(generate(tmp_path / "big", preset="tiny", vocab=20000, layers=1))
    assert len(big) == 20000 and big.convert_ids_to_tokens(19999).startswith("<|reserved_special_token_")


def _load(path):
    return BitNetForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_transformers_runs_the_quantized_forward(tiny):
    model = _load(tiny["packed"])
    q = model.model.layers[0].self_attn.q_proj
    assert isinstance(q, BitLinear)
    # One BitLinear against a numpy reimplementation: int8 absmax activations per token,
    # ternary weights, y = (x_q . T^T) / (act_scale * weight_scale).
    x = np.random.default_rng(1).standard_normal((3, 256)).astype(np.float32)
    t = unpack_hf(_tensors(tiny["packed"])["model.layers.0.self_attn.q_proj.weight"]).astype(np.float32)
    act_scale = 127.0 / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-5)
    xq = np.clip(np.rint(x * act_scale), -128, 127)
    expected = (xq @ t.T) / (act_scale * q.weight_scale.item())
    with torch.no_grad():
        got = q(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    ids = torch.tensor([[995, 340, 220, 551, 828, 74, 284, 348, 86, 77, 30, 500]])
    with torch.no_grad():
        logits = model(ids).logits[0]
    top2 = logits.topk(2, dim=-1).values
    margins = top2[:, 0] - top2[:, 1]
    print("top-1/top-2 margins:", margins.tolist())
    assert margins.median() > 0.1  # float noise is ~1e-5: greedy decoding is well defined

    master = _load(tiny["bf16"])
    mq = master.model.layers[0].self_attn.q_proj
    assert isinstance(mq, AutoBitLinear) and mq.online_quant
    with torch.no_grad():
        master_logits = master(ids).logits[0]
    # Same ternary weights; only the bf16 rounding of the packed scales differs.
    assert torch.corrcoef(torch.stack([logits.flatten(), master_logits.flatten()]))[0, 1] > 0.99


def test_other_architectures_have_their_real_layouts(tmp_path):
    """`bitnet` looks like 1bitLLM/bitnet_b1_58-large (fp16 masters, inner_attn_ln / ffn_layernorm,
    tied), `llama` like tiiuae/Falcon3-1B-Instruct-1.58bit (packed codes + weight_scale, explicit
    head_dim, untied lm_head kept out of the quantization), and transformers loads the latter
    with its BitNet layers."""
    from transformers import LlamaForCausalLM

    one = generate(tmp_path / "bitnet", preset="bitnet-tiny", layers=1)
    cfg = json.loads((one / "config.json").read_text())
    assert cfg["architectures"] == ["BitnetForCausalLM"] and cfg["model_type"] == "llama"
    assert cfg["hidden_act"] == "silu" and cfg["torch_dtype"] == "float16" and cfg["rope_theta"] == 10000.0
    assert "quantization_config" not in cfg and cfg["tie_word_embeddings"]
    t = _tensors(one)
    assert t["model.layers.0.self_attn.inner_attn_ln.weight"].shape == (384,)
    assert t["model.layers.0.mlp.ffn_layernorm.weight"].shape == (512,)
    assert t["model.layers.0.self_attn.q_proj.weight"].dtype == np.float16 and "lm_head.weight" not in t

    llama = generate(tmp_path / "llama", preset="llama-tiny", layers=1)
    cfg = json.loads((llama / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["head_dim"] == 96
    assert cfg["quantization_config"]["quant_method"] == "bitnet"
    assert cfg["quantization_config"]["modules_to_not_convert"] == ["lm_head"]
    t = _tensors(llama)
    assert t["model.layers.0.self_attn.q_proj.weight"].shape == (4 * 96 // 4, 256)
    assert t["model.layers.0.self_attn.o_proj.weight"].shape == (256 // 4, 4 * 96)
    assert t["lm_head.weight"].shape == (1000, 256) and not any("sub_norm" in k for k in t)
    model = LlamaForCausalLM.from_pretrained(llama, dtype=torch.float32)
    assert isinstance(model.model.layers[0].self_attn.q_proj, BitLinear)
    assert isinstance(model.lm_head, torch.nn.Linear)


def test_bad_architecture_arguments(tmp_path):
    import click

    with pytest.raises(click.ClickException, match="bitnet has no 'packed' checkpoints; use fp16"):
        generate(tmp_path / "x", preset="bitnet-tiny", fmt="packed")
    with pytest.raises(click.ClickException, match="head_dim \\* heads == hidden"):
        generate(tmp_path / "x", preset="tiny", head_dim=96)
    with pytest.raises(click.ClickException, match="unknown architecture"):
        generate(tmp_path / "x", preset="tiny", arch="gpt2")
