"""llama.cpp block quantization of float matrices, byte for byte in ggml's block layouts.

The converter uses it for the embedding/output matrix (`--embd-type q8_0|q6_k|q4_0`) and tests
use it to build TQ1_0/TQ2_0 files. Types the `gguf` package can quantize (Q8_0, Q4_0, TQ1_0,
TQ2_0) go through `gguf.quants.quantize`, which matches ggml's reference quantizers. gguf 0.19
only dequantizes Q6_K, so its quantizer is written here after ggml's `quantize_row_q6_K_ref`:

* each 16-value sub-block gets the scale that minimises the x²-weighted squared error over
  levels in [-32, 31], searched over 19 candidate inverse scales -(32 + 0.1 c) / max, c in
  [-9, 9] (max: the value of largest magnitude, which lands on the extra level -32), the scale
  for given levels being the weighted least-squares one;
* the 16 scales of a 256-value super-block are stored as int8 against one fp16 d, chosen so that
  the largest scale maps to -128;
* the values are then re-quantized against the int8-rounded scales actually stored.

Block layout of Q6_K (210 bytes per 256 values): ql[128] low 4 bits, qh[64] high 2 bits,
scales[16] int8, d fp16; value 128h + 32j + l (h < 2, j < 4, l < 32) takes the low (j < 2) or
high (j >= 2) nibble of ql[64h + 32(j % 2) + l] and bits 2j..2j+1 of qh[32h + l], and is
d * scales[i // 16] * (q - 32).
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import quantize as gguf_quantize

from bitnet.common import BitnetError

GGML_TYPE_IDS = {"q8_0": 8, "q4_0": 2, "q6_k": 14, "tq1_0": 34, "tq2_0": 35}

QK_K = 256
_ROWS_PER_CHUNK_VALUES = 1 << 20  # values per numpy chunk: the Q6_K search holds 19 copies


def quantize(data: np.ndarray, type_name: str) -> np.ndarray:
    """Quantize a float32 matrix [rows, k] to `type_name` (a key of GGML_TYPE_IDS).

    Returns uint8 [rows, row_bytes], llama.cpp's exact block bytes. Raises BitnetError for an
    unknown type or a row length that is not a multiple of the type's block size.
    """
    if type_name not in GGML_TYPE_IDS:
        raise BitnetError(f"unknown quantization type '{type_name}': use one of "
                          f"{', '.join(GGML_TYPE_IDS)}")
    qtype = GGMLQuantizationType(GGML_TYPE_IDS[type_name])
    block, block_bytes = GGML_QUANT_SIZES[qtype]
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2:
        raise BitnetError(f"quantize expects a 2-D matrix [rows, k], got shape {data.shape}")
    rows, k = data.shape
    if k % block:
        raise BitnetError(f"rows of {k} values cannot be stored as {type_name}, whose blocks hold "
                          f"{block}: pick a type with a block size dividing {k} (or f16)")
    if qtype != GGMLQuantizationType.Q6_K:
        return np.asarray(gguf_quantize(data, qtype), dtype=np.uint8).reshape(rows, -1)
    out = np.empty((rows, k // block * block_bytes), dtype=np.uint8)
    step = max(1, _ROWS_PER_CHUNK_VALUES // k)
    for r0 in range(0, rows, step):
        blocks = data[r0:r0 + step].reshape(-1, QK_K)
        out[r0:r0 + step] = _quantize_q6_k_blocks(blocks).reshape(-1, out.shape[1])
    return out


def _best_scales(x: np.ndarray, nmax: int) -> np.ndarray:
    """Per row of x ([n, 16]): the weighted least-squares scale over levels [-nmax, nmax-1]."""
    amax_i = np.abs(x).argmax(axis=-1)
    vmax = np.take_along_axis(x, amax_i[:, None], axis=-1)  # signed value of largest magnitude
    w = x * x
    cands = -(nmax + 0.1 * np.arange(-9, 10, dtype=np.float32))  # [19]
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = cands[None, :] / vmax  # [n, 19]
        lv = np.clip(np.rint(iscale[:, :, None] * x[:, None, :]), -nmax, nmax - 1)  # [n, 19, 16]
        sumlx = (w[:, None, :] * x[:, None, :] * lv).sum(-1)
        suml2 = (w[:, None, :] * lv * lv).sum(-1)
        score = np.where(suml2 > 0, sumlx * sumlx / suml2, -np.inf)
        best = score.argmax(axis=-1)
        pick = np.arange(x.shape[0])
        scale = sumlx[pick, best] / suml2[pick, best]
    return np.where(np.isfinite(scale) & (np.abs(vmax[:, 0]) > 1e-15), scale, 0.0).astype(np.float32)


def _quantize_q6_k_blocks(blocks: np.ndarray) -> np.ndarray:
    """[n, 256] float32 -> [n, 210] uint8 Q6_K blocks."""
    n = blocks.shape[0]
    sub = blocks.reshape(n * 16, 16)
    scales = _best_scales(sub, 32).reshape(n, 16)
    imax = np.abs(scales).argmax(axis=-1)
    max_scale = np.take_along_axis(scales, imax[:, None], axis=-1)  # [n, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(max_scale != 0, -128.0 / max_scale, 0.0).astype(np.float32)
        d = np.where(iscale != 0, 1.0 / iscale, 0.0).astype(np.float32)
    sc = np.minimum(127, np.rint(iscale * scales)).astype(np.int8)  # [n, 16]
    d16 = d.astype(np.float16)
    dj = (d16.astype(np.float32) * sc.astype(np.float32))[:, :, None]  # [n, 16, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.where(dj != 0, np.rint(blocks.reshape(n, 16, 16) / dj), 0.0)
    codes = (np.clip(lv, -32, 31) + 32).astype(np.uint8).reshape(n, 2, 4, 32)  # [n, h, j, l]
    lo, hi = codes & 0x0F, codes >> 4
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=-1)
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    return np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), sc.view(np.uint8),
                           d16.view(np.uint8).reshape(n, 2)], axis=-1)
