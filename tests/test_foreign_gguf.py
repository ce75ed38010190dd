"""GGUF files made by bitnet.cpp and llama.cpp load and run, with the semantics their makers meant.

The files are built here, with the gguf package's writer and quantizers (and bitnet/formats/quants.py),
in the layouts those projects publish, from the same dummy checkpoints the engine's own files
come from; the reference is the engine's own I2_S run of those checkpoints (itself checked
against transformers in test_engine_reference.py and test_archs.py):

  bitnet.cpp   arch "bitnet-b1.58" (microsoft/BitNet-b1.58-2B-4T-gguf: F16 token_embd, tied) and
               its older name "bitnet-25" (F32 token_embd), "bitnet" (1bitLLM, with its "linear"
               RoPE scaling of factor 1) and "llama" (Falcon3: F32 token_embd, F16 output); I2_S
               with only the float32 scale in the trailer (no exact divisor), and no
               hidden_activation key, so the architecture decides the activation;
  llama.cpp    arch "bitnet" with TQ2_0 / TQ1_0 ternary tensors. Its converter dequantizes, so
               every 256-value block carries d = f16(scale); the alternative layout keeps d = 1
               and puts the scale in a float32 "<name>.scale" tensor, which llama.cpp's bitnet
               graph multiplies in. The 2B4T in this arch must still run relu² (a file without
               the hidden_activation key is recognized by its grouped-query attention), and a
               1bitLLM model SiLU. Embeddings in Q6_K / Q8_0 (the reference file uses the same
               embedding type, so only the ternary layout differs).

Comparison: the two tiers of test_engine_reference.py (every position within what int8
quantizer flips explain, same argmax except at near-ties, most positions equal to float
rounding). A file with d = f16(scale) holds slightly different weights: f16 moves the scale by up
to 2^-11, which moves activations by up to 127 * 2^-11 = 0.06 quantization steps, so ~6% of the
int8 roundings flip (measured: 2e-2 logit differences everywhere). Its reference is therefore our
I2_S file with the same f16-rounded scale in its trailer: the same weights, our own layout.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from test_engine_reference import EXACT_TOL, FLIP_TOL, PROMPTS
from bitnet.formats.gguf_reader import read_gguf
from bitnet.formats.ternary import I2S_TYPE_ID, unpack_i2s

def rewrite(src, dst, arch: str, tensor_fn=None, drop=(), extra=None):
    """Copy the GGUF file `src` to `dst` under architecture `arch` (the `<arch>.` keys renamed),
    without the keys in `drop`, with `extra` keys added, and each tensor replaced by
    tensor_fn(name, GGUFTensor) -> [(name, numpy shape, ggml type id, uint8 bytes), ...]."""
    g = read_gguf(src)
    old = g.metadata["general.architecture"]
    w = gguf.GGUFWriter(dst, arch)
    for key, value in list(g.metadata.items()) + list((extra or {}).items()):
        if key in drop:
            continue
        key = arch + key[len(old):] if key.startswith(old + ".") else key
        if key == "general.architecture":
            continue
        if isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_key_value(key, value, gguf.GGUFValueType.get_type(value))
    out = []
    for name, t in g.tensors.items():
        same = [(name, tuple(reversed(t.ne)), t.type_id, np.asarray(t.data))]
        out += tensor_fn(name, t) if tensor_fn else same
    for name, shape, type_id, data in out:
        w.add_tensor_info(name, shape, np.dtype(np.float32), data.nbytes, raw_dtype=type_id)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, _, _, data in out:
        w.write_tensor_data(data)
    w.close()
    return dst


def bitnet_cpp_i2s(name, t):
    """bitnet.cpp's I2_S: the float32 scale and then zeros (no exact divisor in bytes 4..7)."""
    data = np.array(t.data)
    if t.type_id == I2S_TYPE_ID:
        data[-28:] = 0
    return [(name, tuple(reversed(t.ne)), t.type_id, data)]


def i2s_f16_scale(name, t):
    """Our I2_S with the scale rounded to f16, as a TQ block's d holds it, and no divisor."""
    data = np.array(t.data)
    if t.type_id == I2S_TYPE_ID:
        scale = data[-32:-28].view(np.float32)[0]
        data[-32:-28] = np.array([np.float16(scale)], np.float32).view(np.uint8)
        data[-28:] = 0
    return [(name, tuple(reversed(t.ne)), t.type_id, data)]


def llama_cpp_tq(qtype: gguf.GGMLQuantizationType, scale_tensors: bool):
    """llama.cpp's TQ1_0/TQ2_0 ternary tensors, from our I2_S ones."""

    def fn(name, t):
        if t.type_id != I2S_TYPE_ID:
            return [(name, tuple(reversed(t.ne)), t.type_id, np.asarray(t.data))]
        shape = tuple(reversed(t.ne))
        tern, scale = unpack_i2s(np.asarray(t.data), shape)
        values = tern.astype(np.float32) * (np.float32(1) if scale_tensors else scale)
        out = [(name, shape, int(qtype), gguf.quants.quantize(values, qtype))]
        if scale_tensors:
            out.append((name.replace(".weight", ".scale"), (1,), 0, np.array([scale], np.float32).view(np.uint8)))
        return out

    return fn


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from utils.generate_dummy_model import generate

    root = tmp_path_factory.mktemp("foreign")
    return {
        "2b4t": generate(root / "2b4t", preset="tiny", seed=4),
        "1bitllm": generate(root / "1bitllm", preset="bitnet-padded", seed=4, ffn=512),
        "falcon3": generate(root / "falcon3", preset="llama-tiny", seed=4),
    }


def _ours(ckpt, embd_type):
    from bitnet.convert.hf import convert

    out = ckpt / f"ours-{embd_type}.gguf"
    return out if out.exists() else convert(ckpt, out, embd_type=embd_type)


# name: (checkpoint, embedding type, arch, tensor_fn, dropped keys, extra keys, activation,
#        reference: None for our file, or the tensor_fn that makes it hold the same weights)
CASES = {
    "bitnet.cpp-2b4t": ("2b4t", "f16", "bitnet-b1.58", bitnet_cpp_i2s, ("bitnet-b1.58.hidden_activation",), None,
                        "relu2", None),
    "bitnet.cpp-bitnet-25": ("2b4t", "f32", "bitnet-25", bitnet_cpp_i2s, ("bitnet-b1.58.hidden_activation",), None,
                             "relu2", None),
    "bitnet.cpp-1bitllm": ("1bitllm", "f32", "bitnet", bitnet_cpp_i2s, ("bitnet.hidden_activation",),
                           {"bitnet.rope.scaling.type": "linear", "bitnet.rope.scaling.factor": 1.0}, "silu", None),
    "bitnet.cpp-falcon3": ("falcon3", "f32", "llama", bitnet_cpp_i2s, ("llama.hidden_activation",), None, "silu",
                           None),
    "llama.cpp-2b4t-tq2_0": ("2b4t", "q6_k", "bitnet", llama_cpp_tq(gguf.GGMLQuantizationType.TQ2_0, False),
                             ("bitnet-b1.58.hidden_activation",), None, "relu2", i2s_f16_scale),
    "llama.cpp-2b4t-tq1_0-scales": ("2b4t", "q8_0", "bitnet", llama_cpp_tq(gguf.GGMLQuantizationType.TQ1_0, True),
                                    (), None, "relu2", None),
    "llama.cpp-1bitllm-tq2_0": ("1bitllm", "f16", "bitnet", llama_cpp_tq(gguf.GGMLQuantizationType.TQ2_0, False),
                                ("bitnet.hidden_activation",), None, "silu", i2s_f16_scale),
}


@pytest.mark.parametrize("case", list(CASES))
def test_foreign_file_runs_like_ours(engine_lib, ckpts, tmp_path, case):
    from tokenizers import Tokenizer

    from bitnet.bindings import Context, Model

    ckpt_name, embd_type, arch, fn, drop, extra, act, ref_fn = CASES[case]
    ckpt = ckpts[ckpt_name]
    ours = _ours(ckpt, embd_type)
    theirs = rewrite(ours, tmp_path / f"{case}.gguf", arch, fn, drop, extra)
    if ref_fn:
        ours = rewrite(ours, tmp_path / "reference.gguf", read_gguf(ours).metadata["general.architecture"], ref_fn)
    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    errs, n_close, n_pos = [], 0, 0
    with Model(ours) as mo, Model(theirs) as mt:
        assert mt.desc.startswith(arch + " ") and mt.desc.endswith(" " + act), mt.desc
        for text in PROMPTS[:6]:
            ids = tok.encode(text, add_special_tokens=True).ids
            with Context(mo, n_ctx=128, n_threads=2) as co, Context(mt, n_ctx=128, n_threads=2) as ct:
                want, got = co.decode(ids, logits_all=True), ct.decode(ids, logits_all=True)
            scale = np.max(np.abs(want))
            per_pos = np.max(np.abs(got - want), axis=-1) / scale
            n_close += int((per_pos <= EXACT_TOL).sum())
            n_pos += len(per_pos)
            errs.append(float(per_pos.max()))
            assert errs[-1] <= FLIP_TOL, f"{case} {text!r}: max |Δlogit| / max |logit| = {errs[-1]:.2e}"
            differs = got.argmax(-1) != want.argmax(-1)
            top2 = np.sort(want, axis=-1)[:, -2:]
            assert (top2[differs, 1] - top2[differs, 0] <= FLIP_TOL * scale).all(), f"{case} {text!r}: argmax"
    print(f"\n{case}: max error per prompt " + ", ".join(f"{e:.1e}" for e in errs) + f"; {n_close}/{n_pos} agree to float rounding")
    assert n_close * 3 > n_pos * 2, f"{case}: only {n_close}/{n_pos} positions agree to float rounding"


def test_activation_key_is_honoured_and_checked(engine_lib, ckpts, tmp_path):
    """A "bitnet" file that names its activation runs it, even against the 2B4T signature; an
    activation the engine does not have is a clear error, not a silent SiLU."""
    from bitnet.bindings import BitnetError, Model

    ours = _ours(ckpts["2b4t"], "f16")
    silu = rewrite(ours, tmp_path / "silu.gguf", "bitnet", drop=("bitnet-b1.58.hidden_activation",),
                   extra={"bitnet.hidden_activation": "silu"})
    with Model(silu) as m:
        assert m.desc.endswith(" silu")
    gelu = rewrite(ours, tmp_path / "gelu.gguf", "bitnet", drop=("bitnet-b1.58.hidden_activation",),
                   extra={"bitnet.hidden_activation": "gelu"})
    with pytest.raises(BitnetError, match="'bitnet.hidden_activation' = 'gelu' is not an activation"):
        Model(gelu)
