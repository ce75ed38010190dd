"""Write a random BitNet b1.58 checkpoint in Hugging Face format, for tests and benchmarks.

The directory looks like microsoft/bitnet-b1.58-2B-4T (or its -bf16 sibling): config.json,
model.safetensors, tokenizer.json + tokenizer_config.json (with a chat template) and
generation_config.json, so the converter and the transformers reference treat it as the real
thing. Weights are random but deterministic in --seed; every tensor has its own generator seeded
from (seed, tensor name), so values do not depend on the order tensors are written in.

Formats:
  packed  the offline checkpoint of bitnet-b1.58-2B-4T: every linear is uint8 [out/4, in] ternary
          codes plus a bf16 `weight_scale` [1] = 1/mean|W| (BitLinear divides by it);
  bf16    master weights: linears are bf16 [out, in]; transformers ternarizes them on the fly.
For the same seed both formats hold the same master weights, so they describe the same ternary
model (the packed scale is the bf16 rounding of the online one).

Scales are chosen so logits are far from flat (greedy decoding is not a sea of near-ties):
each residual branch adds O(1) per element while embeddings are small, and the tied output has
logit std ~4. The tokenizer is a Llama-3-style byte-level BPE trained on Python's own help text
(pydoc_data.topics, always available offline), padded with Llama-3 reserved special tokens when
training cannot reach the requested vocabulary.

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

from utils.ternary import absmean_quantize, pack_hf  # noqa: E402

BF16 = ml_dtypes.bfloat16

# Shapes of real BitNet models (1bitLLM / bitnet.cpp benchmark shapes, BitNet b1.58 2B4T).
# All use the 2B4T architecture here (relu2, sub-norms, tied embeddings).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=1000, ctx=512),
    "125m": dict(hidden=768, layers=12, heads=12, kv_heads=12, ffn=3072, vocab=32002, ctx=2048),
    "350m": dict(hidden=1024, layers=24, heads=16, kv_heads=16, ffn=4096, vocab=32002, ctx=2048),
    "700m": dict(hidden=1536, layers=24, heads=16, kv_heads=16, ffn=4096, vocab=32002, ctx=2048),
    "2b4t": dict(hidden=2560, layers=30, heads=20, kv_heads=5, ffn=6912, vocab=128256, ctx=4096),
    "3b": dict(hidden=3200, layers=26, heads=32, kv_heads=32, ffn=8640, vocab=32002, ctx=2048),
    "7b": dict(hidden=4096, layers=32, heads=32, kv_heads=32, ffn=11008, vocab=32002, ctx=2048),
    "13b": dict(hidden=5120, layers=40, heads=40, kv_heads=40, ffn=13824, vocab=32002, ctx=2048),
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

# The chat format of bitnet-b1.58-2B-4T: "<bos>User: hi<|eot_id|>Assistant: ".
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)

QUANT_CONFIG_PACKED = {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}
# transformers quantizes bf16 master weights on the fly (AutoBitLinear, WeightQuant) only with
# this config; without any quantization_config its BitNet forward is plain float.
QUANT_CONFIG_BF16 = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}

EMBED_CHUNK_ROWS = 8192  # rows of the embedding generated at a time (bounds RAM for 128k vocab)
F16_MIN_NORMAL = 2.0**-14


def resolve_config(preset: str, **overrides: int | None) -> dict[str, int]:
    """Preset shape with overrides applied; raises click.ClickException for bad shapes."""
    if preset.lower() not in PRESETS:
        raise click.ClickException(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    shape = dict(PRESETS[preset.lower()])
    shape.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(shape) - set(PRESETS["tiny"])
    if unknown:
        raise click.ClickException(f"unknown shape override(s): {', '.join(sorted(unknown))}")
    if shape["hidden"] % shape["heads"] or shape["heads"] % shape["kv_heads"]:
        raise click.ClickException(
            f"hidden {shape['hidden']} must be a multiple of heads {shape['heads']}, "
            f"and heads a multiple of kv-heads {shape['kv_heads']}"
        )
    if (shape["hidden"] // shape["heads"]) % 2:
        raise click.ClickException("head dimension (hidden/heads) must be even for RoPE")
    for key in ("hidden", "ffn"):
        if shape[key] % 4:
            raise click.ClickException(f"{key} {shape[key]} must be a multiple of 4 for the packed format")
    if shape["vocab"] < 512:
        raise click.ClickException(f"vocab {shape['vocab']} is too small: use at least 512")
    return shape


def _tensor_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _linears(shape: dict[str, int]) -> list[tuple[str, int, int]]:
    """(name suffix, out, in) of the ternary projections of one layer."""
    head_dim = shape["hidden"] // shape["heads"]
    h, f, kv = shape["hidden"], shape["ffn"], shape["kv_heads"] * head_dim
    return [
        ("self_attn.q_proj", h, h),
        ("self_attn.k_proj", kv, h),
        ("self_attn.v_proj", kv, h),
        ("self_attn.o_proj", h, h),
        ("mlp.gate_proj", f, h),
        ("mlp.up_proj", f, h),
        ("mlp.down_proj", h, f),
    ]


def _master_linear(seed: int, name: str, out_f: int, in_f: int) -> np.ndarray:
    # std 1.5/sqrt(in): T·x then has rms ~1 per output for unit-rms x (|T| is 1 w.p. ~2/3 and
    # the absmean scale is ~0.8 std), so each residual branch adds O(1).
    w = _tensor_rng(seed, name).standard_normal((out_f, in_f), dtype=np.float32)
    return (w * np.float32(1.5 / math.sqrt(in_f))).astype(BF16)


def _tensor_specs(shape: dict[str, int], seed: int, fmt: str) -> Iterator[tuple[str, str, list[int], Callable]]:
    """Yield (name, safetensors dtype, shape, producer) in file order; producer() yields arrays."""
    hidden, vocab = shape["hidden"], shape["vocab"]

    def embed():
        rng = _tensor_rng(seed, "model.embed_tokens.weight")
        std = np.float32(4.0 / math.sqrt(hidden))  # tied output: logit std ~4 for unit-rms h
        for r0 in range(0, vocab, EMBED_CHUNK_ROWS):
            rows = min(EMBED_CHUNK_ROWS, vocab - r0)
            e = rng.standard_normal((rows, hidden), dtype=np.float32) * std
            # Flush values below f16's normal range so the bf16 -> f16 conversion is exact.
            e[np.abs(e) < F16_MIN_NORMAL] = 0
            yield e.astype(BF16)

    def norm(name: str, size: int):
        return lambda: iter([_tensor_rng(seed, name).uniform(0.5, 1.5, size).astype(np.float32).astype(BF16)])

    def linear_master(name, out_f, in_f):
        return lambda: iter([_master_linear(seed, name, out_f, in_f)])

    def linear_packed(name, out_f, in_f):
        # The scale is written right after the weight: keep it from the weight's quantization
        # instead of drawing the master matrix twice.
        scale_of = {}

        def weight():
            t, scale_of["s"] = absmean_quantize(_master_linear(seed, name, out_f, in_f))
            yield pack_hf(t)

        def scale():
            yield np.array([scale_of.pop("s")], dtype=np.float32).astype(BF16)

        return weight, scale

    yield "model.embed_tokens.weight", "BF16", [vocab, hidden], embed
    for layer in range(shape["layers"]):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", "BF16", [hidden], norm(p + "input_layernorm.weight", hidden)
        for suffix, out_f, in_f in _linears(shape):
            name = p + suffix + ".weight"
            if fmt == "packed":
                weight, scale = linear_packed(name, out_f, in_f)
                yield name, "U8", [out_f // 4, in_f], weight
                yield p + suffix + ".weight_scale", "BF16", [1], scale
            else:
                yield name, "BF16", [out_f, in_f], linear_master(name, out_f, in_f)
            if suffix == "self_attn.v_proj":
                sub = p + "self_attn.attn_sub_norm.weight"
                yield sub, "BF16", [hidden], norm(sub, hidden)
            if suffix == "self_attn.o_proj":
                post = p + "post_attention_layernorm.weight"
                yield post, "BF16", [hidden], norm(post, hidden)
            if suffix == "mlp.up_proj":
                sub = p + "mlp.ffn_sub_norm.weight"
                yield sub, "BF16", [shape["ffn"]], norm(sub, shape["ffn"])
    yield "model.norm.weight", "BF16", [hidden], norm("model.norm.weight", hidden)


def write_safetensors_streaming(path: Path, specs: list[tuple[str, str, list[int], Callable]]) -> None:
    """Write a .safetensors file one tensor at a time.

    The format is an 8-byte little-endian header length, a JSON header mapping each name to
    dtype, shape and [begin, end) byte offsets into the data section, then the raw data.
    """
    itemsize = {"BF16": 2, "U8": 1}
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


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tokenizer_and_configs(out: Path, tok, shape: dict[str, int], quantization_config: dict) -> None:
    """Write tokenizer.json, tokenizer_config.json (with the chat template), generation_config.json
    and config.json of a 2B4T-architecture checkpoint into the existing directory `out`.

    tok: a tokenizer from build_tokenizer; shape: hidden, layers, heads, kv_heads, ffn, vocab, ctx.
    """
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
    _write_json(
        out / "config.json",
        {
            "architectures": ["BitNetForCausalLM"],
            "model_type": "bitnet",
            "vocab_size": shape["vocab"],
            "hidden_size": shape["hidden"],
            "intermediate_size": shape["ffn"],
            "num_hidden_layers": shape["layers"],
            "num_attention_heads": shape["heads"],
            "num_key_value_heads": shape["kv_heads"],
            "hidden_act": "relu2",
            "max_position_embeddings": shape["ctx"],
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "bos_token_id": ids[BOS],
            "eos_token_id": ids[EOS_TEXT],
            "torch_dtype": "bfloat16",
            "use_cache": True,
            "quantization_config": quantization_config,
        },
    )


def generate(outdir: str | Path, preset: str = "tiny", seed: int = 0, fmt: str = "packed", **overrides) -> Path:
    """Write a random BitNet checkpoint into outdir (created if needed) and return its path.

    overrides: hidden, layers, heads, kv_heads, ffn, vocab, ctx (None = keep the preset's).
    fmt: "packed" (offline ternary, like bitnet-b1.58-2B-4T) or "bf16" (master weights).
    Raises click.ClickException for bad arguments.
    """
    if fmt not in ("packed", "bf16"):
        raise click.ClickException(f"unknown format {fmt!r}: use packed or bf16")
    shape = resolve_config(preset, **overrides)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer(shape["vocab"])
    write_tokenizer_and_configs(out, tok, shape, QUANT_CONFIG_PACKED if fmt == "packed" else QUANT_CONFIG_BF16)
    write_safetensors_streaming(out / "model.safetensors", list(_tensor_specs(shape, seed, fmt)))
    return out


@click.command()
@click.option("--outdir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the checkpoint into.")
@click.option("--preset", default="tiny", show_default=True, type=click.Choice(list(PRESETS), case_sensitive=False),
              help="Model shape.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same files).")
@click.option("--format", "fmt", default="packed", show_default=True, type=click.Choice(["packed", "bf16"]),
              help="packed: offline ternary like bitnet-b1.58-2B-4T; bf16: master weights.")
@click.option("--hidden", type=int, help="Override hidden size.")
@click.option("--layers", type=int, help="Override number of layers.")
@click.option("--heads", type=int, help="Override attention heads.")
@click.option("--kv-heads", type=int, help="Override key/value heads.")
@click.option("--ffn", type=int, help="Override feed-forward size.")
@click.option("--vocab", type=int, help="Override vocabulary size (>= 512).")
@click.option("--ctx", type=int, help="Override max_position_embeddings.")
def main(outdir, preset, seed, fmt, **overrides):
    """Write a random BitNet b1.58 checkpoint in Hugging Face format."""
    path = generate(outdir, preset=preset, seed=seed, fmt=fmt, **overrides)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
