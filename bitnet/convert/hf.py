"""Convert a Hugging Face ternary checkpoint to GGUF, in the layout bitnet.cpp and llama.cpp use
(the library behind utils/convert_hf_to_gguf.py, setup_env.py and BitNetModel.from_pretrained).

Three architectures, recognized from config.json:

  BitNetForCausalLM (model_type "bitnet")   -> GGUF arch "bitnet-b1.58": BitNet b1.58 2B4T,
      relu² FFN, sub-norms attn_sub_norm / ffn_sub_norm, NEOX RoPE (Q/K as stored);
  BitnetForCausalLM (1bitLLM's custom code) -> GGUF arch "bitnet": SiLU FFN, sub-norms
      self_attn.inner_attn_ln / mlp.ffn_layernorm (written as attn_sub_norm / ffn_sub_norm),
      NEOX RoPE (Q/K as stored, like bitnet.cpp's and llama.cpp's converters);
  LlamaForCausalLM + quantization_config {quant_method: bitnet} -> GGUF arch "llama": ternary
      Llama-3 / Falcon3 / Falcon-E, SwiGLU, no sub-norms, NORM RoPE with the rows of Wq and Wk
      permuted per head as llama.cpp's converter does (so files interoperate with llama.cpp's and
      bitnet.cpp's "llama" files);
  Qwen3ForCausalLM + quantization_config {quant_method: bitnet, use_rms_norm: true} -> GGUF arch
      "qwen3": microsoft/bitnet-embedding-0.6b, SwiGLU, NEOX RoPE, an RMSNorm inside every
      BitLinear (`<proj>.rms_norm.weight`, written as bitnet.cpp does: blk.N.attn_q_norm_in, ...,
      ffn_down_norm_in), per-head q/k norms (attn_q_norm / attn_k_norm), no output matrix, and
      `qwen3.pooling_type` (llama.cpp's numbering; last token unless config.json says otherwise).

Each writes `<arch>.hidden_activation` ("relu2" or "silu", llama.cpp's key) besides the usual
`<arch>.*` hyperparameters. Two kinds of ternary linears are accepted:

* packed (offline) checkpoints like microsoft/bitnet-b1.58-2B-4T and tiiuae/Falcon3-*-1.58bit:
  each linear is uint8 [out/4, in] ternary codes plus `weight_scale` (divided by, or multiplied
  by with linear_class "autobitlinear");
* master-weight checkpoints (bf16 or fp16, like 1bitLLM's and the -bf16 repos): float linears,
  ternarized here with absmean exactly as transformers and 1bitLLM's code do online.

Ternary linears are written as I2_S (type 36, see bitnet/formats/ternary.py; rows whose length is not a
multiple of 128 end in a zero-padded block), as the lookup-table types TL1 / TL2 (types 38 / 39,
see bitnet/formats/tl_pack.py; the file records their row block under `bitnet.tl.bm`), or dequantized to
F16/F32; norms are F32; the
embedding and output matrix are F32, F16, Q8_0, Q6_K or Q4_0 (bitnet/formats/quants.py). Tensors are
converted and written one at a time, into a temporary file that is renamed at the end, so a
failure never leaves a half-written model behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy so safetensors can load BF16)
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter
from safetensors import safe_open

from bitnet.common import read_json
from bitnet.convert.vocab import add_tokenizer
from bitnet.formats.gguf_reader import tensor_nbytes
from bitnet.formats.ternary import I2S_TYPE_ID, absmean_quantize, pack_i2s, unpack_hf
from bitnet.formats.tl_pack import (
    TL_BLOCK_KEY,
    TL_BM,
    TL_LAYOUT,
    TL_LAYOUT_KEY,
    TL_TYPE_IDS,
    check_tl_shape,
    pack_tl,
)

ARCH_B158, ARCH_BITNET, ARCH_LLAMA, ARCH_QWEN3 = "bitnet-b1.58", "bitnet", "llama", "qwen3"
# llama.cpp's enum llama_pooling_type, the value of `<arch>.pooling_type`.
POOLING_TYPES = {"none": 0, "mean": 1, "cls": 2, "last": 3}
# general.file_type (llama_ftype numbering; TL1/TL2 as bitnet.cpp numbers them, next to I2_S)
FILE_TYPES = {"f32": 0, "f16": 1, "i2_s": 40, "tl1": 38, "tl2": 39}
TERNARY_OUTTYPES = ("i2_s", "tl1", "tl2")  # packed ternary linears (the others are float)
GGML_F32, GGML_F16 = 0, 1
EMBD_TYPES = ("f32", "f16", "q8_0", "q6_k", "q4_0")
EMBED_CHUNK_ROWS = 8192  # embedding rows quantized at a time (bounds RAM for 128k vocabularies)

# Per-layer tensors: (Hugging Face suffix, GGUF name, kind); kinds "norm", "sub_norm", "linear".
# The sub-norms' Hugging Face names differ by architecture (SUB_NORMS).
LAYER_TENSORS = [
    ("input_layernorm", "attn_norm", "norm"),
    ("self_attn.q_proj", "attn_q", "linear"),
    ("self_attn.k_proj", "attn_k", "linear"),
    ("self_attn.v_proj", "attn_v", "linear"),
    ("self_attn.o_proj", "attn_output", "linear"),
    (None, "attn_sub_norm", "sub_norm"),
    ("post_attention_layernorm", "ffn_norm", "norm"),
    ("mlp.gate_proj", "ffn_gate", "linear"),
    ("mlp.up_proj", "ffn_up", "linear"),
    ("mlp.down_proj", "ffn_down", "linear"),
    (None, "ffn_sub_norm", "sub_norm"),
]
SUB_NORMS = {
    ARCH_B158: {"attn_sub_norm": "self_attn.attn_sub_norm", "ffn_sub_norm": "mlp.ffn_sub_norm"},
    ARCH_BITNET: {"attn_sub_norm": "self_attn.inner_attn_ln", "ffn_sub_norm": "mlp.ffn_layernorm"},
    ARCH_LLAMA: {},
    ARCH_QWEN3: {},
}
ACTIVATIONS = {ARCH_B158: "relu2", ARCH_BITNET: "silu", ARCH_LLAMA: "silu", ARCH_QWEN3: "silu"}


def detect_arch(cfg: dict) -> str:
    """The GGUF architecture of a config.json, or a ClickException naming what was found."""
    archs = cfg.get("architectures") or []
    qc = cfg.get("quantization_config") or {}
    if cfg.get("model_type") == "bitnet":
        return ARCH_B158
    if "BitnetForCausalLM" in archs:
        return ARCH_BITNET
    if "LlamaForCausalLM" in archs and cfg.get("model_type") == "llama" and qc.get("quant_method") == "bitnet":
        return ARCH_LLAMA
    if "Qwen3ForCausalLM" in archs and cfg.get("model_type") == "qwen3" and qc.get("quant_method") == "bitnet":
        return ARCH_QWEN3
    raise click.ClickException(
        f"config.json has model_type {cfg.get('model_type')!r} and architectures {archs}; this converter "
        f"handles ternary checkpoints: BitNetForCausalLM (microsoft/bitnet-b1.58-2B-4T), BitnetForCausalLM "
        f"(1bitLLM/bitnet_b1_58-*) and LlamaForCausalLM with quantization_config quant_method 'bitnet' "
        f"(Falcon3-*-1.58bit, Falcon-E, Llama3-8B-1.58)"
    )


class Hparams:
    """The model hyperparameters the converter needs, checked against what it supports."""

    def __init__(self, cfg: dict):
        self.arch = detect_arch(cfg)
        self.act = ACTIVATIONS[self.arch]
        if cfg.get("hidden_act", self.act) != self.act:
            raise click.ClickException(
                f"hidden_act {cfg['hidden_act']!r} is not supported for {cfg.get('architectures')} "
                f"(model_type {cfg.get('model_type')!r}; expected {self.act!r})"
            )
        try:
            self.hidden = int(cfg["hidden_size"])
            self.layers = int(cfg["num_hidden_layers"])
            self.heads = int(cfg["num_attention_heads"])
            self.ffn = int(cfg["intermediate_size"])
            self.vocab = int(cfg["vocab_size"])
        except KeyError as e:
            raise click.ClickException(f"config.json lacks {e.args[0]!r}") from None
        self.kv_heads = int(cfg.get("num_key_value_heads") or self.heads)
        self.head_dim = int(cfg.get("head_dim") or self.hidden // self.heads)
        if self.heads % self.kv_heads or self.head_dim % 2:
            raise click.ClickException(
                f"unsupported attention shape: {self.heads} heads, {self.kv_heads} kv heads, head dim {self.head_dim}"
            )
        self.ctx = int(cfg.get("max_position_embeddings", 4096))
        self.eps = float(cfg.get("rms_norm_eps", 1e-5))
        # transformers 4.x and the real checkpoints spell `rope_theta`; 5.x writes rope_parameters.
        rope = cfg.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default" or cfg.get("rope_scaling"):
            raise click.ClickException(
                f"RoPE scaling {rope.get('rope_type') or cfg.get('rope_scaling')!r} is not supported (only default RoPE)"
            )
        default_theta = 500000.0 if self.arch == ARCH_B158 else 10000.0
        self.rope_theta = float(rope.get("rope_theta", cfg.get("rope_theta", default_theta)))
        self.tied = bool(cfg.get("tie_word_embeddings", self.arch != ARCH_LLAMA))
        qc = cfg.get("quantization_config") or {}
        # use_rms_norm: an RMSNorm inside every BitLinear, supported for the Qwen3 backbone only.
        self.norm_in = bool(qc.get("use_rms_norm"))
        if self.norm_in != (self.arch == ARCH_QWEN3):
            raise click.ClickException(
                f"quantization_config.use_rms_norm = {qc.get('use_rms_norm')!r} is not supported for "
                f"{self.arch} checkpoints (only Qwen3 BitNet embedding models have these norms, and they must)"
            )
        if self.norm_in and float(qc.get("rms_norm_eps") or 1e-6) != self.eps:
            # The GGUF carries one epsilon for every norm of the model, as bitnet.cpp's does.
            raise click.ClickException(
                f"quantization_config.rms_norm_eps {qc.get('rms_norm_eps')} differs from rms_norm_eps {self.eps}"
            )
        pooling = str(cfg.get("pooling", "last")).lower()
        if pooling not in POOLING_TYPES:
            raise click.ClickException(f"config.json pooling {pooling!r}: use one of {', '.join(POOLING_TYPES)}")
        self.pooling = POOLING_TYPES[pooling]
        if self.arch == ARCH_QWEN3:
            self.tied = True  # an embedding model: no output matrix is written
        # BitLinear (the default) divides by weight_scale; AutoBitLinear multiplies by it.
        self.scale_multiplies = qc.get("linear_class") == "autobitlinear"

    def linear_shape(self, hf_suffix: str) -> tuple[int, int]:
        """(out, in) of a projection."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "self_attn.q_proj": (q, self.hidden),
            "self_attn.k_proj": (kv, self.hidden),
            "self_attn.v_proj": (kv, self.hidden),
            "self_attn.o_proj": (self.hidden, q),
            "mlp.gate_proj": (self.ffn, self.hidden),
            "mlp.up_proj": (self.ffn, self.hidden),
            "mlp.down_proj": (self.hidden, self.ffn),
        }[hf_suffix]

    def permute_heads(self, hf_suffix: str) -> int | None:
        """Heads whose rows are permuted for NORM RoPE (llama arch Wq, Wk), else None."""
        if self.arch != ARCH_LLAMA:
            return None
        return {"self_attn.q_proj": self.heads, "self_attn.k_proj": self.kv_heads}.get(hf_suffix)


class Weights:
    """Lazy access to the checkpoint's tensors across one or more safetensors files."""

    def __init__(self, model_dir: Path):
        index = model_dir / "model.safetensors.index.json"
        if index.is_file():
            weight_map = read_json(index).get("weight_map", {})
            files = sorted(set(weight_map.values()))
        elif (model_dir / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise click.ClickException(f"no model.safetensors or model.safetensors.index.json in {model_dir}")
        self._where: dict[str, object] = {}
        self._handles = []
        for name in files:
            path = model_dir / name
            if not path.is_file():
                raise click.ClickException(f"{path} (listed in the safetensors index) not found")
            handle = safe_open(str(path), framework="numpy")
            self._handles.append(handle)
            for key in handle.keys():
                self._where[key] = handle

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> list[int]:
        return list(self._handle(name).get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        return self._handle(name).get_slice(name).get_dtype()

    def get(self, name: str) -> np.ndarray:
        return self._handle(name).get_tensor(name)

    def _handle(self, name: str):
        if name not in self._where:
            raise click.ClickException(f"tensor {name} missing from the checkpoint")
        return self._where[name]


def _check_shape(weights: Weights, name: str, expected: list[int]) -> None:
    found = weights.shape(name)
    if found != expected:
        raise click.ClickException(f"tensor {name} has shape {found}, config.json implies {expected}")


def _is_packed(weights: Weights, hf_name: str) -> bool:
    return weights.dtype(hf_name) == "U8"


def check_linear(weights: Weights, hf_name: str, out_f: int, in_f: int) -> None:
    """Check a projection's stored shape (and scale, when packed) before anything is written."""
    if _is_packed(weights, hf_name):
        _check_shape(weights, hf_name, [out_f // 4, in_f])
        _check_shape(weights, hf_name + "_scale", [1])
    else:
        _check_shape(weights, hf_name, [out_f, in_f])


def load_ternary(weights: Weights, hp: Hparams, hf_name: str) -> tuple[np.ndarray, np.float32, np.float32 | None]:
    """The ternary matrix int8 [out, in], its dequantized scale (W ~= T * scale), and the divisor
    the reference model rescales with (None when it multiplies by the scale instead)."""
    if _is_packed(weights, hf_name):  # offline checkpoint: codes + weight_scale
        ws = np.float32(weights.get(hf_name + "_scale").astype(np.float32).reshape(-1)[0])
        t = unpack_hf(weights.get(hf_name))
        if (t > 1).any():
            raise click.ClickException(f"tensor {hf_name} holds the unused ternary code 3: the checkpoint is corrupt")
        if hp.scale_multiplies:
            return t, ws, None
        return t, np.float32(1.0) / ws, ws
    t, s = absmean_quantize(weights.get(hf_name))
    return t, np.float32(1.0) / s, s


def _permute_rows(t: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder each head's rows from Hugging Face's halves (NEOX pairs i, i+d/2) to llama.cpp's
    interleaved pairs (2i, 2i+1), as llama.cpp's converter permutes Wq and Wk of "llama" models."""
    rows = t.shape[0]
    return t.reshape(n_head, 2, rows // n_head // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)


def _quants():
    """bitnet/formats/quants.py (quantized embedding types), imported on first use."""
    from bitnet.formats import quants

    return quants


def embd_ggml_type(embd_type: str) -> int:
    """The ggml type id of an --embd-type name."""
    if embd_type in ("f16", "f32"):
        return GGML_F16 if embd_type == "f16" else GGML_F32
    return int(_quants().GGML_TYPE_IDS[embd_type])


def _lin_ggml_type(outtype: str) -> int:
    return {"i2_s": I2S_TYPE_ID, "f16": GGML_F16, "f32": GGML_F32, **TL_TYPE_IDS}[outtype]


def _plan(weights: Weights, hp: Hparams, outtype: str, embd_type: str) -> list[tuple]:
    """(gguf name, hf name, kind, ggml type, numpy shape [rows, cols]) of every output tensor."""
    embd_ggml = embd_ggml_type(embd_type)
    if embd_ggml not in (GGML_F16, GGML_F32):
        block = GGML_QUANT_SIZES[GGMLQuantizationType(embd_ggml)][0]
        if hp.hidden % block:
            raise click.ClickException(
                f"--embd-type {embd_type} needs a hidden size that is a multiple of {block}, not {hp.hidden}; "
                f"use f16 or q8_0"
            )
    plan = [("token_embd.weight", "model.embed_tokens.weight", "embed", embd_ggml, (hp.vocab, hp.hidden))]
    lin_type = _lin_ggml_type(outtype)
    sub_norms = SUB_NORMS[hp.arch]
    for layer in range(hp.layers):
        for hf_suffix, gguf_name, kind in LAYER_TENSORS:
            name = f"blk.{layer}.{gguf_name}.weight"
            if kind == "sub_norm":
                if gguf_name in sub_norms:
                    size = hp.ffn if gguf_name == "ffn_sub_norm" else hp.heads * hp.head_dim
                    plan.append((name, f"model.layers.{layer}.{sub_norms[gguf_name]}.weight", "norm", GGML_F32,
                                 (size,)))
                continue
            hf_name = f"model.layers.{layer}.{hf_suffix}.weight"
            if kind == "norm":
                plan.append((name, hf_name, "norm", GGML_F32, (hp.hidden,)))
                continue
            out_f, in_f = hp.linear_shape(hf_suffix)
            if hp.norm_in:
                plan.append((f"blk.{layer}.{gguf_name}_norm_in.weight",
                             f"model.layers.{layer}.{hf_suffix}.rms_norm.weight", "norm", GGML_F32, (in_f,)))
            if hp.arch == ARCH_QWEN3 and gguf_name in ("attn_q", "attn_k"):
                plan.append((f"blk.{layer}.{gguf_name}_norm.weight",
                             f"model.layers.{layer}.self_attn.{gguf_name[-1]}_norm.weight", "norm", GGML_F32,
                             (hp.head_dim,)))
            if lin_type in TL_TYPE_IDS.values():
                try:
                    check_tl_shape(lin_type, out_f, in_f)
                except ValueError as e:
                    raise click.ClickException(f"{name} [{out_f}, {in_f}]: {e}; convert with --outtype i2_s") from None
            plan.append((name, hf_name, "linear", lin_type, (out_f, in_f)))
    plan.append(("output_norm.weight", "model.norm.weight", "norm", GGML_F32, (hp.hidden,)))
    if hp.arch != ARCH_QWEN3 and (not hp.tied or "lm_head.weight" in weights):
        plan.append(("output.weight", "lm_head.weight", "embed", embd_ggml, (hp.vocab, hp.hidden)))
    for _, hf_name, kind, _, shape in plan:
        if kind == "linear":
            check_linear(weights, hf_name, *shape)
        else:
            _check_shape(weights, hf_name, list(shape))
    return plan


def _embed_data(data: np.ndarray, ggml_type: int, embd_type: str) -> np.ndarray:
    if ggml_type in (GGML_F16, GGML_F32):
        return data.astype(np.float16 if ggml_type == GGML_F16 else np.float32)
    quantize = _quants().quantize
    chunks = [quantize(np.ascontiguousarray(data[r:r + EMBED_CHUNK_ROWS], dtype=np.float32), embd_type)
              for r in range(0, data.shape[0], EMBED_CHUNK_ROWS)]
    return np.concatenate(chunks)


def _tensor_data(weights: Weights, hp: Hparams, entry: tuple, embd_type: str) -> np.ndarray:
    _, hf_name, kind, ggml_type, shape = entry
    if kind == "linear":
        t, scale, divisor = load_ternary(weights, hp, hf_name)
        n_head = hp.permute_heads(hf_name.split(".", 3)[3].removesuffix(".weight"))
        if n_head:
            t = _permute_rows(t, n_head)
        if ggml_type == I2S_TYPE_ID:
            return pack_i2s(t, scale, divisor)
        if ggml_type in TL_TYPE_IDS.values():
            return pack_tl(t, ggml_type, scale, divisor)
        dtype = np.float16 if ggml_type == GGML_F16 else np.float32
        return (t.astype(np.float32) * scale).astype(dtype)
    data = weights.get(hf_name)
    if kind == "embed":
        return _embed_data(data, ggml_type, embd_type)
    return data.astype(np.float32)


def _nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of torch-order `shape` in the file (gguf_reader's rule, ggml order)."""
    return tensor_nbytes(ggml_type, tuple(shape[::-1]))


def _write_hparams(writer: GGUFWriter, hp: Hparams, name: str, outtype: str) -> None:
    writer.add_name(name)
    writer.add_file_type(FILE_TYPES[outtype])
    writer.add_quantization_version(2)
    writer.add_context_length(hp.ctx)
    writer.add_embedding_length(hp.hidden)
    writer.add_block_count(hp.layers)
    writer.add_feed_forward_length(hp.ffn)
    writer.add_rope_dimension_count(hp.head_dim)
    if hp.head_dim * hp.heads != hp.hidden:  # llama.cpp's keys for an explicit head_dim
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    writer.add_head_count(hp.heads)
    writer.add_head_count_kv(hp.kv_heads)
    writer.add_layer_norm_rms_eps(hp.eps)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_vocab_size(hp.vocab)
    # llama.cpp's key for the FFN activation; engines that default to SiLU need it for the 2B4T.
    writer.add_string(f"{hp.arch}.hidden_activation", hp.act)
    if hp.arch == ARCH_QWEN3:
        writer.add_uint32(f"{hp.arch}.pooling_type", hp.pooling)
    if outtype in TL_TYPE_IDS:  # the engine refuses TL tensors of another layout
        writer.add_uint32(TL_BLOCK_KEY, TL_BM)
        writer.add_uint32(TL_LAYOUT_KEY, TL_LAYOUT)


def default_embd_type(outtype: str, hidden: int) -> str:
    """The embedding/output type the converter writes unless told otherwise.

    With packed ternary linears (i2_s, tl1, tl2) the output matrix is the largest single read of a generated token (2B4T:
    0.66 GB in f16 against 0.52 GB of ternary weights), so it is quantized: Q6_K (0.27 GB) costs
    +0.03% perplexity on the shipped model and its GEMV runs at the read bandwidth; Q4_0 would be
    smaller but costs +0.47%, over the 0.3% budget. Q6_K needs rows that are a multiple of 256;
    otherwise Q8_0 (-0.003%). Float linears (outtype f16/f32) keep a float embedding of that type.
    """
    if outtype not in TERNARY_OUTTYPES:
        return outtype
    return "q6_k" if hidden % 256 == 0 else "q8_0"


def _prepare(model_dir: Path, outtype: str, embd_type: str | None) -> tuple[dict, Hparams, str, Weights, list[tuple]]:
    """The checks convert() makes before it writes anything, and what they give it: config,
    hyperparameters, embedding type, weights and the tensor plan."""
    if outtype not in FILE_TYPES:
        raise click.ClickException(f"unknown outtype {outtype!r}: use i2_s, tl1, tl2, f16 or f32")
    if embd_type not in EMBD_TYPES + (None,):
        raise click.ClickException(f"unknown embedding type {embd_type!r}: use {', '.join(EMBD_TYPES)}")
    if not model_dir.is_dir():
        raise click.ClickException(f"{model_dir} is not a directory")
    cfg = read_json(model_dir / "config.json")
    hp = Hparams(cfg)
    embd_type = embd_type or default_embd_type(outtype, hp.hidden)
    weights = Weights(model_dir)
    return cfg, hp, embd_type, weights, _plan(weights, hp, outtype, embd_type)


def check(model_dir: str | Path, outtype: str = "i2_s", embd_type: str | None = None) -> None:
    """Check, in seconds and without writing, that convert() would accept the checkpoint with these
    settings: config and architecture, every tensor present with its shape, the tokenizer files.
    Raises the click.ClickException convert() would raise. setup_env.py calls it before the long
    engine build."""
    _, hp, _, _, _ = _prepare(Path(model_dir), outtype, embd_type)
    add_tokenizer(GGUFWriter(None, hp.arch), Path(model_dir), hp.vocab)  # in memory only


def convert(model_dir: str | Path, outfile: str | Path | None = None, outtype: str = "i2_s",
            embd_type: str | None = None) -> Path:
    """Convert the checkpoint in model_dir to GGUF and return the output path.

    outtype: i2_s | tl1 | tl2 | f16 | f32 (the ternary linears); embd_type: f32 | f16 | q8_0 | q6_k | q4_0
    for token_embd and output.weight (default: see default_embd_type). outfile
    defaults to model_dir/ggml-model-<outtype>.gguf. Raises click.ClickException for bad input;
    the output appears only when complete.
    """
    model_dir = Path(model_dir)
    out = Path(outfile) if outfile else model_dir / f"ggml-model-{outtype}.gguf"
    cfg, hp, embd_type, weights, plan = _prepare(model_dir, outtype, embd_type)

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    writer = GGUFWriter(tmp, hp.arch)
    try:
        _write_hparams(writer, hp, cfg.get("_name_or_path") or model_dir.resolve().name, outtype)
        add_tokenizer(writer, model_dir, hp.vocab)
        for name, _, _, ggml_type, shape in plan:
            # I2_S and TL1/TL2 are unknown to the gguf package: give the logical shape and byte count
            # directly. The numpy dtype must not be uint8, which would make the writer derive
            # the shape from GGML_QUANT_SIZES (which has no entry for types 36, 38, 39).
            writer.add_tensor_info(name, shape, np.dtype(np.float32), _nbytes(ggml_type, shape), raw_dtype=ggml_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for i, entry in enumerate(plan, 1):
            click.echo(f"[{i}/{len(plan)}] {entry[0]} {list(entry[4])}", err=True)
            data = _tensor_data(weights, hp, entry, embd_type)
            if data.nbytes != _nbytes(entry[3], entry[4]):
                raise click.ClickException(
                    f"{entry[0]}: {data.nbytes} bytes of data, the tensor table says {_nbytes(entry[3], entry[4])}"
                )
            writer.write_tensor_data(data)
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


def _conversion_inputs(model_dir: Path) -> list[Path]:
    """Files whose change makes a converted GGUF stale: the checkpoint's files and the converter."""
    files = [p for p in model_dir.iterdir()
             if p.is_file() and not p.name.startswith(".") and ".gguf" not in p.name]
    package = Path(__file__).resolve().parent.parent
    return files + [package / name for name in ("convert/hf.py", "formats/ternary.py", "formats/tl_pack.py")]


def _is_up_to_date(gguf: Path, model_dir: Path, embd_type: str) -> bool:
    if not gguf.is_file():
        return False
    newest_input = max((p.stat().st_mtime for p in _conversion_inputs(model_dir) if p.exists()), default=0)
    if gguf.stat().st_mtime <= newest_input:
        return False
    from bitnet.formats.gguf_reader import read_gguf

    try:
        embd = read_gguf(gguf).tensors.get("token_embd.weight")
    except (ValueError, UnicodeDecodeError, OSError):  # truncated or foreign file: convert again
        return False
    return embd is not None and embd.type_id == embd_ggml_type(embd_type)


def gguf_for(model_dir: Path, outtype: str = "i2_s", embd_type: str | None = None) -> tuple[Path, str, bool]:
    """Where the conversion of the checkpoint in model_dir goes (``ggml-model-<outtype>.gguf`` beside
    it), the embedding type it gets (``embd_type``, or the default for outtype and the hidden size)
    and whether that file is current: newer than the checkpoint and the converter, and written
    with that embedding type. setup_env.py and BitNetModel.from_pretrained convert only when not."""
    model_dir = Path(model_dir)
    gguf = model_dir / f"ggml-model-{outtype}.gguf"
    embd_type = embd_type or default_embd_type(outtype, Hparams(read_json(model_dir / "config.json")).hidden)
    return gguf, embd_type, _is_up_to_date(gguf, model_dir, embd_type)
