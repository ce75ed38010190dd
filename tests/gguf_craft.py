"""A tiny GGUF writer for handcrafted test files, good and bad.

Independent of the `gguf` package on purpose: tests need files that no well-behaved writer would
produce (a wrong magic, a string length of 2^60, a tensor offset past the end), so everything here
is plain `struct` packing with every field overridable, and `build` reports where each section
starts so a test can cut or patch the file at an exact place.

Also builds the minimal valid `bitnet-b1.58` model (hidden 128, 1 layer, 2 heads, 1 kv head,
ffn 128, vocab 300, F32 weights) that the bad-input tests start from, and the catalogue of corrupt
files (`corrupt_cases`) that both the engine and the C++ reader test are run against.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass, field

import numpy as np

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
TYPE_NAMES = ["UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING",
              "ARRAY", "UINT64", "INT64", "FLOAT64"]
_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
               BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}

# ggml tensor type ids and their (block size, bytes per block, bytes after the last block)
GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16, GGML_TQ2_0, GGML_I2_S = 0, 1, 8, 30, 35, 36
GGML_SIZES = {0: (1, 4, 0), 1: (1, 2, 0), 2: (32, 18, 0), 8: (32, 34, 0), 14: (256, 210, 0),
              30: (1, 2, 0), 34: (256, 54, 0), 35: (256, 66, 0), 36: (128, 32, 32)}


def tensor_nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of this type and ggml shape (ne0 first) takes in the file."""
    block, size, trailer = GGML_SIZES[ggml_type]
    n = int(np.prod(shape))
    assert shape[0] % block == 0, "use raw bytes to write a misaligned row"
    return n // block * size + trailer


def enc_str(s: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string; `length` overrides the declared length (to lie about it)."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b) if length is None else length) + b


def enc_value(vtype: int, value, elem: int | None = None, count: int | None = None) -> bytes:
    """Value bytes (without the type id). For ARR give `elem`; `count` overrides the count."""
    if vtype == STR:
        return enc_str(value)
    if vtype == ARR:
        assert elem is not None
        n = len(value) if count is None else count
        return struct.pack("<IQ", elem, n) + b"".join(enc_value(elem, v) for v in value)
    return struct.pack(_SCALAR_FMT[vtype], value)


def kv(key: str, vtype: int, value, elem: int | None = None, count: int | None = None) -> bytes:
    """One encoded metadata entry: key, type id, value."""
    return enc_str(key) + struct.pack("<I", vtype) + enc_value(vtype, value, elem, count)


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]  # ggml order: ne0 (the row length) first
    ggml_type: int
    data: bytes
    offset: int | None = None  # relative to the data section; None = next aligned position
    lie_offset: int | None = None  # offset written in the tensor info instead of the real one


@dataclass
class Built:
    data: bytes
    kv_offsets: list[int] = field(default_factory=list)  # start of each metadata entry
    tensor_info_start: int = 0
    tensor_info_offsets: list[int] = field(default_factory=list)
    data_start: int = 0
    tensor_offsets: list[int] = field(default_factory=list)  # absolute start of each tensor


def build(kvs: list[bytes], tensors: list[Tensor], *, version: int = 3, alignment: int = 32,
          magic: bytes = b"GGUF", n_kv: int | None = None, n_tensors: int | None = None,
          header_only: bool = False) -> Built:
    """Assembles a GGUF file from encoded metadata entries (see `kv`) and tensors.

    `alignment` is what the data is laid out with; write a general.alignment entry yourself when
    it is not the default 32. The counts can be overridden to lie about them. `header_only`: stop
    at the start of the data section (the caller writes the rest, or leaves a hole).
    """
    out = bytearray(magic + struct.pack("<I", version))
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                       len(kvs) if n_kv is None else n_kv)
    res = Built(b"")
    for e in kvs:
        res.kv_offsets.append(len(out))
        out += e
    res.tensor_info_start = len(out)
    rel, offsets = 0, []
    for t in tensors:
        off = rel if t.offset is None else t.offset
        offsets.append(off)
        rel = -(-(off + len(t.data)) // alignment) * alignment
    for t, off in zip(tensors, offsets):
        res.tensor_info_offsets.append(len(out))
        out += enc_str(t.name) + struct.pack("<I", len(t.shape))
        out += b"".join(struct.pack("<Q", d) for d in t.shape)
        out += struct.pack("<IQ", t.ggml_type, off if t.lie_offset is None else t.lie_offset)
    res.data_start = -(-len(out) // alignment) * alignment
    out += bytes(res.data_start - len(out))
    for t, off in zip(tensors, [] if header_only else offsets):
        start = res.data_start + off
        if start > len(out):
            out += bytes(start - len(out))
        res.tensor_offsets.append(start)
        out[start:start + len(t.data)] = t.data
    res.data = bytes(out)
    return res


def f32_tensor(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> Tensor:
    """A float32 tensor of ggml shape `shape` with small random values."""
    n = int(np.prod(shape))
    return Tensor(name, shape, GGML_F32, (rng.standard_normal(n) * 0.05).astype("<f4").tobytes())


# ---- minimal bitnet-b1.58 model ----------------------------------------------------------------

ARCH = "bitnet-b1.58"
N_EMBD, N_LAYER, N_HEAD, N_HEAD_KV, N_FF, N_VOCAB = 128, 1, 2, 1, 128, 300
HEAD_DIM = N_EMBD // N_HEAD


def byte_level_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode map: the printable string of each byte value 0..255."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def tokenizer_kvs() -> list[bytes]:
    """A consistent byte-level BPE vocabulary of N_VOCAB tokens: 256 bytes, merges, 2 specials."""
    tokens = byte_level_alphabet()
    letters = "etaonihs"
    n_merges = N_VOCAB - 256 - 2
    merges = [f"{a} {b}" for a in letters for b in letters][:n_merges]
    tokens += [m.replace(" ", "") for m in merges]
    tokens += ["<|begin_of_text|>", "<|end_of_text|>"]
    assert len(tokens) == N_VOCAB and len(set(tokens)) == N_VOCAB
    types = [1] * (N_VOCAB - 2) + [3, 3]
    return [
        kv("tokenizer.ggml.model", STR, "gpt2"),
        kv("tokenizer.ggml.pre", STR, "llama-bpe"),
        kv("tokenizer.ggml.tokens", ARR, tokens, elem=STR),
        kv("tokenizer.ggml.token_type", ARR, types, elem=I32),
        kv("tokenizer.ggml.merges", ARR, merges, elem=STR),
        kv("tokenizer.ggml.bos_token_id", U32, N_VOCAB - 2),
        kv("tokenizer.ggml.eos_token_id", U32, N_VOCAB - 1),
    ]


def model_kvs(arch: str = ARCH) -> list[bytes]:
    p = arch + "."
    return [
        kv("general.architecture", STR, arch),
        kv("general.name", STR, "tiny test model"),
        kv(p + "context_length", U32, 256),
        kv(p + "embedding_length", U32, N_EMBD),
        kv(p + "block_count", U32, N_LAYER),
        kv(p + "feed_forward_length", U32, N_FF),
        kv(p + "rope.dimension_count", U32, HEAD_DIM),
        kv(p + "attention.head_count", U32, N_HEAD),
        kv(p + "attention.head_count_kv", U32, N_HEAD_KV),
        kv(p + "attention.layer_norm_rms_epsilon", F32, 1e-5),
        kv(p + "rope.freq_base", F32, 500000.0),
    ]


def model_tensors(seed: int = 0) -> list[Tensor]:
    rng = np.random.default_rng(seed)
    t = [f32_tensor("token_embd.weight", (N_EMBD, N_VOCAB), rng),
         f32_tensor("output_norm.weight", (N_EMBD,), rng)]
    for i in range(N_LAYER):
        b = f"blk.{i}."
        t += [f32_tensor(b + "attn_norm.weight", (N_EMBD,), rng),
              f32_tensor(b + "attn_q.weight", (N_EMBD, N_HEAD * HEAD_DIM), rng),
              f32_tensor(b + "attn_k.weight", (N_EMBD, N_HEAD_KV * HEAD_DIM), rng),
              f32_tensor(b + "attn_v.weight", (N_EMBD, N_HEAD_KV * HEAD_DIM), rng),
              f32_tensor(b + "attn_output.weight", (N_HEAD * HEAD_DIM, N_EMBD), rng),
              f32_tensor(b + "attn_sub_norm.weight", (N_EMBD,), rng),
              f32_tensor(b + "ffn_norm.weight", (N_EMBD,), rng),
              f32_tensor(b + "ffn_gate.weight", (N_EMBD, N_FF), rng),
              f32_tensor(b + "ffn_up.weight", (N_EMBD, N_FF), rng),
              f32_tensor(b + "ffn_down.weight", (N_FF, N_EMBD), rng),
              f32_tensor(b + "ffn_sub_norm.weight", (N_FF,), rng)]
    return t


def minimal_model(arch: str = ARCH, drop_tensor: str | None = None) -> Built:
    """The smallest valid bitnet-b1.58 GGUF (or one with `arch` / one tensor left out)."""
    tensors = [t for t in model_tensors() if t.name != drop_tensor]
    assert drop_tensor is None or len(tensors) == len(model_tensors()) - 1
    return build(model_kvs(arch) + tokenizer_kvs(), tensors)


# ---- corrupt files -----------------------------------------------------------------------------

def _with_tensor(tensors: list[Tensor], name: str, **changes) -> list[Tensor]:
    out = []
    for t in tensors:
        if t.name == name:
            t = Tensor(**{**t.__dict__, **changes})
        out.append(t)
    return out


def corrupt_cases() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a word the one-line error must contain). All fail in the GGUF reader
    (or the type table), before any architecture-specific check."""
    good = minimal_model()
    d = good.data
    kvs = model_kvs() + tokenizer_kvs()
    tensors = model_tensors()
    tokens_kv = next(i for i, e in enumerate(kvs) if b"tokenizer.ggml.tokens" in e[:40])

    cases = {
        "empty": (b"", "empty"),
        "cut_in_magic": (d[:3], "magic"),
        "cut_in_header": (d[:12], "truncated"),
        "cut_in_metadata": (d[:good.kv_offsets[tokens_kv] + 100], "truncated"),
        "cut_in_tensor_infos": (d[:good.tensor_info_offsets[3] + 5], "truncated"),
        "cut_in_tensor_data": (d[:good.tensor_offsets[-1] + 10], "truncated"),
        "cut_before_data": (d[:good.data_start], "truncated"),
        "wrong_magic": (b"GGML" + d[4:], "magic"),
        "safetensors_instead": (struct.pack("<Q", 64) + b'{"__metadata__":{}}' + bytes(40),
                                "magic"),
        "version_1": (d[:4] + struct.pack("<I", 1) + d[8:], "version 1"),
        "version_4": (d[:4] + struct.pack("<I", 4) + d[8:], "version"),
        "big_endian": (d[:4] + struct.pack(">I", 3) + d[8:], "big-endian"),
        "huge_kv_count": (build(kvs, tensors, n_kv=2**62).data, "metadata count"),
        "huge_tensor_count": (build(kvs, tensors, n_tensors=2**62).data, "tensors"),
        "huge_string_length": (build([enc_str("general.architecture", length=2**60)], []).data,
                               "string length"),
        "huge_value_string": (build([enc_str("k") + struct.pack("<I", STR) +
                                     enc_str("abc", length=2**40)], []).data, "string length"),
        "huge_array_count": (build(kvs[:1] + [kv("tokenizer.ggml.tokens", ARR, ["a"], elem=STR,
                                                 count=2**61)], []).data, "array count"),
        "huge_int_array_count": (build([kv("a", ARR, [1, 2], elem=U64, count=2**59)], []).data,
                                 "array count"),
        "nested_array": (build([enc_str("a") + struct.pack("<IIQ", ARR, ARR, 1) +
                                enc_value(ARR, [1], elem=U8)], []).data, "array of arrays"),
        "unknown_value_type": (build([enc_str("a") + struct.pack("<I", 13) + bytes(8)], []).data,
                               "value type"),
        "duplicate_key": (build(kvs + kvs[:1], tensors).data, "twice"),
        "duplicate_tensor": (build(kvs, tensors + tensors[-1:]).data, "twice"),
        "bad_alignment": (build([kv("general.alignment", U32, 24)] + kvs, tensors).data,
                          "power of two"),
        "zero_alignment": (build([kv("general.alignment", U32, 0)] + kvs, tensors).data,
                           "power of two"),
        "unknown_tensor_type": (build(kvs, _with_tensor(tensors, "blk.0.attn_q.weight",
                                                        ggml_type=77)).data, "unknown type id 77"),
        "zero_dims": (build(kvs, _with_tensor(tensors, "output_norm.weight", shape=())).data,
                      "dimensions"),
        "five_dims": (build(kvs, _with_tensor(tensors, "output_norm.weight",
                                              shape=(128, 1, 1, 1, 1))).data, "dimensions"),
        "zero_extent": (build(kvs, _with_tensor(tensors, "output_norm.weight",
                                                shape=(128, 0))).data, "dimension"),
        "element_overflow": (build(kvs, _with_tensor(tensors, "output_norm.weight",
                                                     shape=(2**32, 2**32, 2**32))).data,
                             "64 bits"),
        "data_past_end": (build(kvs, _with_tensor(tensors, "blk.0.ffn_up.weight",
                                                  shape=(N_EMBD, 4096))).data, "truncated"),
        "offset_past_end": (build(kvs, _with_tensor(tensors, "blk.0.attn_q.weight",
                                                    lie_offset=2**40)).data, "truncated"),
        "offset_wraps": (build(kvs, _with_tensor(tensors, "blk.0.attn_q.weight",
                                                 lie_offset=2**64 - 32)).data, "2^64"),
        "overlapping_tensors": (build(kvs, _with_tensor(tensors, "blk.0.attn_k.weight",
                                                        lie_offset=0)).data, "overlap"),
        "misaligned_offset": (build(kvs, _with_tensor(tensors, "blk.0.attn_q.weight",
                                                      lie_offset=4)).data, "alignment"),
        "tq2_k_not_multiple_of_256": (
            build(kvs, _with_tensor(tensors, "blk.0.ffn_down.weight", ggml_type=GGML_TQ2_0,
                                    shape=(96, N_EMBD), data=bytes(96 * N_EMBD // 4 + 32))).data,
            "multiple of 256"),
    }
    return cases


def assert_one_line_error(r: subprocess.CompletedProcess, *words: str):
    """Exit code 1, no signal, no traceback or sanitizer report, exactly one non-empty line on
    stderr containing 'error' and every word."""
    for crash in ("Traceback", "AddressSanitizer", "runtime error", "core dumped"):
        assert crash not in r.stderr, r.stderr
    assert r.returncode == 1, f"exit code {r.returncode}, stderr:\n{r.stderr}"
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.stderr}"
    assert "error" in lines[0].lower(), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"


# ---- deep models: many layers of tiny dimensions -------------------------------------------------

def deep_model(n_layer: int, n_embd: int = 8, alias: bool = False,
               block_count: int | None = None) -> Built:
    """A bitnet-b1.58 model of `n_layer` blocks with n_embd = n_ff = head_dim = `n_embd` (one head)
    and F32 weights: 11 tensors per block, so 4096 blocks make ~45,000 tensor entries. With
    `alias` every tensor points at the data of token_embd (offset 0, which is as large as the
    largest of them): a small file with the tensor table of a model many times its size.
    `block_count` overrides the declared number of blocks."""
    rng = np.random.default_rng(1)
    p = ARCH + "."
    kvs = [kv("general.architecture", STR, ARCH), kv(p + "context_length", U32, 16),
           kv(p + "embedding_length", U32, n_embd), kv(p + "block_count", U32, block_count or n_layer),
           kv(p + "feed_forward_length", U32, n_embd), kv(p + "rope.dimension_count", U32, n_embd),
           kv(p + "attention.head_count", U32, 1), kv(p + "attention.head_count_kv", U32, 1)]
    names = [("attn_norm", 1), ("attn_q", 2), ("attn_k", 2), ("attn_v", 2), ("attn_output", 2),
             ("attn_sub_norm", 1), ("ffn_norm", 1), ("ffn_gate", 2), ("ffn_up", 2),
             ("ffn_down", 2), ("ffn_sub_norm", 1)]
    shapes = [("output_norm.weight", (n_embd,))]
    for i in range(n_layer):
        shapes += [(f"blk.{i}.{n}.weight", (n_embd,) if d == 1 else (n_embd, n_embd))
                   for n, d in names]
    tensors = [f32_tensor("token_embd.weight", (n_embd, N_VOCAB), rng)]
    for name, shape in shapes:
        t = f32_tensor(name, shape, rng)
        if alias:
            t = Tensor(name, shape, GGML_F32, b"", offset=0)
        tensors.append(t)
    return build(kvs + tokenizer_kvs(), tensors)


def model_with_kv(key: str, vtype: int, value) -> Built:
    """The minimal model with metadata entry `key` replaced (or added) by this value."""
    kvs = [e for e in model_kvs() + tokenizer_kvs() if enc_str(key) != e[:8 + len(key.encode())]]
    return build(kvs + [kv(key, vtype, value)], model_tensors())


def minimal_model_unaligned() -> Built:
    """The minimal model with general.alignment = 1 (legal) and its data section, so every F32
    tensor, starting at an odd byte: a padding string in the metadata sets where the data starts."""
    for pad in range(4):
        kvs = [kv("general.alignment", U32, 1), kv("test.pad", STR, "x" * pad)]
        b = build(kvs + model_kvs() + tokenizer_kvs(), model_tensors(), alignment=1)
        if b.data_start % 4 == 1:
            return b
    raise AssertionError("no padding puts the data at an odd offset")


def wide_kv_model(n_layer: int, head_dim: int) -> tuple[Built, int]:
    """A llama model of `n_layer` blocks whose one KV head is `head_dim` wide, with n_embd = n_ff
    = 1 and F16 weights, and its tensor data declared but not written: (the file up to the data
    section, the size the whole file must have). Truncated to that size the rest is a hole, so a
    model of gigabytes takes no disk space; the loader reads only its norm vectors (zeros)."""
    p = "llama."
    kvs = [kv("general.architecture", STR, "llama"), kv(p + "context_length", U32, 256),
           kv(p + "embedding_length", U32, 1), kv(p + "block_count", U32, n_layer),
           kv(p + "feed_forward_length", U32, 1), kv(p + "rope.dimension_count", U32, head_dim),
           kv(p + "attention.key_length", U32, head_dim), kv(p + "attention.value_length", U32, head_dim),
           kv(p + "attention.head_count", U32, 1), kv(p + "attention.head_count_kv", U32, 1)]
    shapes = [("token_embd.weight", (1, N_VOCAB), GGML_F16), ("output_norm.weight", (1,), GGML_F32)]
    for i in range(n_layer):
        b = f"blk.{i}."
        shapes += [(b + "attn_norm.weight", (1,), GGML_F32), (b + "attn_q.weight", (1, head_dim), GGML_F16),
                   (b + "attn_k.weight", (1, head_dim), GGML_F16), (b + "attn_v.weight", (1, head_dim), GGML_F16),
                   (b + "attn_output.weight", (head_dim, 1), GGML_F16), (b + "ffn_norm.weight", (1,), GGML_F32),
                   (b + "ffn_gate.weight", (1, 1), GGML_F16), (b + "ffn_up.weight", (1, 1), GGML_F16),
                   (b + "ffn_down.weight", (1, 1), GGML_F16)]
    # The small tensors' data first: faulting in the norms then reads ahead over their few
    # megabytes only, not over the whole hole (seconds per gigabyte).
    offsets, rel = {}, 0
    for name, shape, ty in sorted(shapes, key=lambda x: tensor_nbytes(x[2], x[1])):
        offsets[name] = rel
        rel += -(-tensor_nbytes(ty, shape) // 32) * 32
    tensors = [Tensor(name, shape, ty, b"", offset=offsets[name]) for name, shape, ty in shapes]
    built = build(kvs + tokenizer_kvs(), tensors, header_only=True)
    return built, built.data_start + rel
