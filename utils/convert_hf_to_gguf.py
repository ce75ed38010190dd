"""Convert a Hugging Face BitNet b1.58 checkpoint (model_type "bitnet") to GGUF.

Reads config.json, the safetensors weights (one file or shards listed in
model.safetensors.index.json), tokenizer.json, tokenizer_config.json and generation_config.json,
and writes a GGUF file with architecture "bitnet-b1.58" in the layout of the official
bitnet-b1.58-2B-4T GGUF. Two kinds of checkpoints are accepted:

* packed (offline) checkpoints like microsoft/bitnet-b1.58-2B-4T: each linear is uint8
  [out/4, in] ternary codes plus `weight_scale`;
* master-weight checkpoints like microsoft/bitnet-b1.58-2B-4T-bf16: float linears, ternarized
  here with absmean exactly as transformers does online.

Ternary linears are written as I2_S (type 36, see utils/ternary.py) or dequantized to F16/F32;
norms are F32; the embedding is F16 or F32. Q and K are not permuted: the engine applies NEOX
RoPE like Hugging Face. Tensors are converted and written one at a time, into a temporary file
that is renamed at the end, so a failure never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy so safetensors can load BF16)
import numpy as np
from gguf import GGUFWriter
from safetensors import safe_open

if __package__ in (None, ""):  # run as `python utils/convert_hf_to_gguf.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.ternary import I2S_BLOCK, I2S_TAIL_BYTES, I2S_TYPE_ID, absmean_quantize, pack_i2s, unpack_hf  # noqa: E402

ARCH = "bitnet-b1.58"
FILE_TYPES = {"f32": 0, "f16": 1, "i2_s": 40}  # general.file_type (llama_ftype numbering)
GGML_F32, GGML_F16 = 0, 1
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5

# Per-layer Hugging Face name -> (GGUF name, kind). Kinds: "norm", "linear".
LAYER_TENSORS = [
    ("input_layernorm", "attn_norm", "norm"),
    ("self_attn.q_proj", "attn_q", "linear"),
    ("self_attn.k_proj", "attn_k", "linear"),
    ("self_attn.v_proj", "attn_v", "linear"),
    ("self_attn.o_proj", "attn_output", "linear"),
    ("self_attn.attn_sub_norm", "attn_sub_norm", "norm"),
    ("post_attention_layernorm", "ffn_norm", "norm"),
    ("mlp.gate_proj", "ffn_gate", "linear"),
    ("mlp.up_proj", "ffn_up", "linear"),
    ("mlp.down_proj", "ffn_down", "linear"),
    ("mlp.ffn_sub_norm", "ffn_sub_norm", "norm"),
]

# The Llama-3 pre-tokenizer split regex; tokenizer.json files that use it get pre "llama-bpe".
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _read_json(path: Path, required: bool = True) -> dict:
    if not path.is_file():
        if required:
            raise click.ClickException(f"{path} not found: is {path.parent} a Hugging Face checkpoint directory?")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{path} is not valid JSON: {e}") from None


class Hparams:
    """The model hyperparameters the converter needs, checked against what it supports."""

    def __init__(self, cfg: dict):
        if cfg.get("model_type") != "bitnet":
            raise click.ClickException(
                f"config.json has model_type {cfg.get('model_type')!r}; this converter handles "
                f"BitNet b1.58 checkpoints (model_type 'bitnet', e.g. microsoft/bitnet-b1.58-2B-4T)"
            )
        if cfg.get("hidden_act", "relu2") != "relu2":
            raise click.ClickException(
                f"hidden_act {cfg['hidden_act']!r} is not supported for model_type 'bitnet' (expected 'relu2')"
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
        self.ctx = int(cfg.get("max_position_embeddings", 4096))
        self.eps = float(cfg.get("rms_norm_eps", 1e-5))
        # transformers 4.x and the real checkpoints spell `rope_theta`; 5.x writes rope_parameters.
        rope = cfg.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            raise click.ClickException(f"rope_type {rope['rope_type']!r} is not supported (only default RoPE)")
        self.rope_theta = float(rope.get("rope_theta", cfg.get("rope_theta", 500000.0)))
        self.tied = bool(cfg.get("tie_word_embeddings", True))
        qc = cfg.get("quantization_config") or {}
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


class Weights:
    """Lazy access to the checkpoint's tensors across one or more safetensors files."""

    def __init__(self, model_dir: Path):
        index = model_dir / "model.safetensors.index.json"
        if index.is_file():
            weight_map = _read_json(index).get("weight_map", {})
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


def _float_type(name: str) -> int:
    return GGML_F16 if name == "f16" else GGML_F32


def _plan(weights: Weights, hp: Hparams, outtype: str, embd_type: str) -> list[tuple]:
    """(gguf name, hf name, kind, ggml type, numpy shape [rows, cols]) of every output tensor."""
    embd_ggml = _float_type(embd_type)
    plan = [("token_embd.weight", "model.embed_tokens.weight", "embed", embd_ggml, (hp.vocab, hp.hidden))]
    lin_type = I2S_TYPE_ID if outtype == "i2_s" else _float_type(outtype)
    for layer in range(hp.layers):
        for hf_suffix, gguf_name, kind in LAYER_TENSORS:
            hf_name = f"model.layers.{layer}.{hf_suffix}.weight"
            name = f"blk.{layer}.{gguf_name}.weight"
            if kind == "norm":
                size = hp.ffn if gguf_name == "ffn_sub_norm" else hp.hidden
                plan.append((name, hf_name, "norm", GGML_F32, (size,)))
                continue
            out_f, in_f = hp.linear_shape(hf_suffix)
            if outtype == "i2_s" and in_f % I2S_BLOCK:
                raise click.ClickException(
                    f"tensor {hf_name} has {in_f} input features, not a multiple of {I2S_BLOCK} as I2_S "
                    f"requires; convert with --outtype f16 instead"
                )
            plan.append((name, hf_name, "linear", lin_type, (out_f, in_f)))
    plan.append(("output_norm.weight", "model.norm.weight", "norm", GGML_F32, (hp.hidden,)))
    if not hp.tied or "lm_head.weight" in weights:
        plan.append(("output.weight", "lm_head.weight", "embed", embd_ggml, (hp.vocab, hp.hidden)))
    for _, hf_name, kind, _, shape in plan:
        if kind == "linear":
            check_linear(weights, hf_name, *shape)
        else:
            _check_shape(weights, hf_name, list(shape))
    return plan


def _tensor_data(weights: Weights, hp: Hparams, entry: tuple) -> np.ndarray:
    _, hf_name, kind, ggml_type, shape = entry
    if kind == "linear":
        t, scale, divisor = load_ternary(weights, hp, hf_name)
        if ggml_type == I2S_TYPE_ID:
            return pack_i2s(t, scale, divisor)
        dtype = np.float16 if ggml_type == GGML_F16 else np.float32
        return (t.astype(np.float32) * scale).astype(dtype)
    data = weights.get(hf_name)
    return data.astype(np.float16 if ggml_type == GGML_F16 else np.float32)


def _nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    n = int(np.prod(shape))
    if ggml_type == I2S_TYPE_ID:
        return n // 4 + I2S_TAIL_BYTES
    return n * (2 if ggml_type == GGML_F16 else 4)


def _pre_tokenizer_name(pre: dict | None) -> str:
    """GGUF tokenizer.ggml.pre for a tokenizer.json pre_tokenizer, or a ClickException."""
    items = (pre or {}).get("pretokenizers", [pre] if pre else [])
    splits = [p.get("pattern", {}).get("Regex") for p in items if p.get("type") == "Split"]
    byte_level = [p for p in items if p.get("type") == "ByteLevel"]
    if splits == [LLAMA3_SPLIT] and byte_level and not byte_level[0].get("use_regex", True):
        return "llama-bpe"
    if not splits and len(byte_level) == 1 and byte_level[0].get("use_regex", True):
        return "gpt-2"
    raise click.ClickException(
        "tokenizer.json uses a pre-tokenizer other than Llama-3's or GPT-2's byte-level rules; "
        "only those are supported"
    )


def _token_id(name: str | dict | None, vocab: dict[str, int]) -> int | None:
    if isinstance(name, dict):  # {"content": "<|eot_id|>", ...} in older tokenizer_config files
        name = name.get("content")
    return vocab.get(name) if name else None


def add_tokenizer(writer: GGUFWriter, model_dir: Path, hp: Hparams) -> None:
    """Write the tokenizer.* keys from tokenizer.json (+ tokenizer_config / generation_config)."""
    tj = _read_json(model_dir / "tokenizer.json")
    tcfg = _read_json(model_dir / "tokenizer_config.json", required=False)
    gcfg = _read_json(model_dir / "generation_config.json", required=False)
    model = tj.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise click.ClickException(
            f"tokenizer.json holds a {model.get('type')} model; only byte-level BPE "
            f"(GPT-2 / Llama-3 style) is supported"
        )
    pre = _pre_tokenizer_name(tj.get("pre_tokenizer"))
    vocab: dict[str, int] = dict(model["vocab"])
    specials = {}
    for added in tj.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        specials[added["id"]] = added.get("special", False)
    n = hp.vocab  # the embedding's rows; a shorter tokenizer is padded with unused tokens
    if max(vocab.values()) >= n:
        raise click.ClickException(
            f"tokenizer.json has token id {max(vocab.values())} but config.json says vocab_size {n}"
        )
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [TOKEN_UNUSED] * n
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = TOKEN_NORMAL if i not in specials else (TOKEN_CONTROL if specials[i] else TOKEN_USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)

    bos = _token_id(tcfg.get("bos_token"), vocab)
    if bos is None:
        bos = gcfg.get("bos_token_id")
    # The end-of-sequence the model emits: tokenizer_config's eos_token (<|eot_id|> for chat
    # models), else generation_config's first eos id, else config.json's.
    eos = _token_id(tcfg.get("eos_token"), vocab)
    if eos is None:
        eos = gcfg.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) else eos
    if bos is not None:
        writer.add_bos_token_id(int(bos))
    if eos is not None:
        writer.add_eos_token_id(int(eos))
    if "<|eot_id|>" in vocab:
        writer.add_eot_token_id(vocab["<|eot_id|>"])
    pad = _token_id(tcfg.get("pad_token"), vocab)
    if pad is not None:
        writer.add_pad_token_id(pad)
    writer.add_add_bos_token(_adds_bos(tj, tcfg, bos))
    if tcfg.get("chat_template"):  # a string, or a list of named templates
        writer.add_chat_template(tcfg["chat_template"])


def _adds_bos(tj: dict, tcfg: dict, bos: int | None) -> bool:
    """Whether encoding prepends BOS: tokenizer_config's add_bos_token, else whether the
    post-processor's single-sequence template starts with the BOS token."""
    if "add_bos_token" in tcfg:
        return bool(tcfg["add_bos_token"])
    post = tj.get("post_processor") or {}
    for proc in post.get("processors", [post]):
        if proc.get("type") == "TemplateProcessing" and proc.get("single"):
            first = proc["single"][0].get("SpecialToken", {}).get("id")
            return bos is not None and bos in proc.get("special_tokens", {}).get(first, {}).get("ids", [])
    return False


def convert(model_dir: str | Path, outfile: str | Path | None = None, outtype: str = "i2_s",
            embd_type: str | None = None) -> Path:
    """Convert the checkpoint in model_dir to GGUF and return the output path.

    outtype: i2_s | f16 | f32 (the ternary linears); embd_type: f16 | f32 for token_embd
    (default f32 when outtype is f32, else f16). outfile defaults to
    model_dir/ggml-model-<outtype>.gguf. Raises click.ClickException for bad input; the output
    appears only when complete.
    """
    model_dir = Path(model_dir)
    if outtype not in FILE_TYPES:
        raise click.ClickException(f"unknown outtype {outtype!r}: use i2_s, f16 or f32")
    embd_type = embd_type or ("f32" if outtype == "f32" else "f16")
    if embd_type not in ("f16", "f32"):
        raise click.ClickException(f"unknown embedding type {embd_type!r}: use f16 or f32")
    if not model_dir.is_dir():
        raise click.ClickException(f"{model_dir} is not a directory")
    out = Path(outfile) if outfile else model_dir / f"ggml-model-{outtype}.gguf"

    cfg = _read_json(model_dir / "config.json")
    hp = Hparams(cfg)
    weights = Weights(model_dir)
    plan = _plan(weights, hp, outtype, embd_type)

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    writer = GGUFWriter(tmp, ARCH)
    try:
        writer.add_name(cfg.get("_name_or_path") or model_dir.resolve().name)
        writer.add_file_type(FILE_TYPES[outtype])
        writer.add_quantization_version(2)
        writer.add_context_length(hp.ctx)
        writer.add_embedding_length(hp.hidden)
        writer.add_block_count(hp.layers)
        writer.add_feed_forward_length(hp.ffn)
        writer.add_rope_dimension_count(hp.head_dim)
        writer.add_head_count(hp.heads)
        writer.add_head_count_kv(hp.kv_heads)
        writer.add_layer_norm_rms_eps(hp.eps)
        writer.add_rope_freq_base(hp.rope_theta)
        writer.add_vocab_size(hp.vocab)
        add_tokenizer(writer, model_dir, hp)
        for name, _, _, ggml_type, shape in plan:
            # I2_S is unknown to the gguf package: give the logical shape and byte count
            # directly. The numpy dtype must not be uint8, which would make the writer derive
            # the shape from GGML_QUANT_SIZES (which has no entry for type 36).
            writer.add_tensor_info(name, shape, np.dtype(np.float32), _nbytes(ggml_type, shape), raw_dtype=ggml_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for i, entry in enumerate(plan, 1):
            click.echo(f"[{i}/{len(plan)}] {entry[0]} {list(entry[4])}", err=True)
            writer.write_tensor_data(_tensor_data(weights, hp, entry))
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--outtype", default="i2_s", show_default=True, type=click.Choice(["i2_s", "f16", "f32"]),
              help="Type of the ternary linear weights.")
@click.option("--outfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Output path [default: MODEL_DIR/ggml-model-<outtype>.gguf].")
@click.option("--embd-type", type=click.Choice(["f16", "f32"]),
              help="Type of token_embd [default: f32 for --outtype f32, else f16].")
def main(model_dir, outtype, outfile, embd_type):
    """Convert a Hugging Face BitNet b1.58 checkpoint in MODEL_DIR to GGUF."""
    path = convert(model_dir, outfile, outtype=outtype, embd_type=embd_type)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
