"""Ternary (1.58-bit) weight helpers shared by the dummy-model generator, the converter and tests.

Three representations of one ternary matrix T[out][in] with values in {-1, 0, +1}:

* absmean quantization of float master weights, exactly as Hugging Face's online BitNet
  quantizer does it (`WeightQuant`): s = 1 / mean|W| in float32, T = round_half_even(W * s)
  clamped to [-1, 1]; the dequantized weight is T / s.
* the Hugging Face "offline" packed checkpoint layout (`pack_weights` in
  transformers/integrations/bitnet.py): uint8 [out/4, in], code = t + 1, stored row j holds
  rows j, j+R, j+2R, j+3R (R = out/4) in bit pairs 1-0, 3-2, 5-4, 7-6.
* the GGUF I2_S tensor (type 36): row-major T flattened, blocks of 128 values in 32 bytes,
  byte j of a block holds values j, j+32, j+64, j+96 in bit pairs 7-6, 5-4, 3-2, 1-0 with
  codes 0 -> -1, 1 -> 0, 2 -> +1; then one float32 scale (the dequantized magnitude, so that
  W ~= T * scale), zero-padded to a 32-byte trailer. A row whose length is not a multiple of
  128 (bitnet_b1_58-3B's FFN of 8640) is padded to whole blocks with code 1 (weight 0), so
  full blocks keep their layout: rows are ceil(in/128)*32 bytes, the tensor
  out*ceil(in/128)*32 + 32 bytes (n/4 + 32 when in is a multiple of 128, as bitnet.cpp's).
"""

from __future__ import annotations

import numpy as np

I2S_TYPE_ID = 36  # GGML type id bitnet.cpp gives I2_S
I2S_BLOCK = 128  # values per I2_S block; rows are padded to whole blocks
I2S_TAIL_BYTES = 32  # float32 scale + zero padding after the packed codes


def absmean_quantize(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Ternarize float weights like transformers' online BitLinear.

    Returns (T as int8 with the shape of w, s) where s = 1/mean|W| (float32, clamped as
    transformers clamps mean|W| to >= 1e-5) and T = clamp(round(W*s), -1, 1), rounding half
    to even like torch.round. The dequantized weight is T / s.
    """
    w32 = np.asarray(w, dtype=np.float32)
    mean_abs = np.float32(np.abs(w32).mean(dtype=np.float64))
    s = np.float32(1.0) / max(mean_abs, np.float32(1e-5))
    t = np.clip(np.rint(w32 * s), -1, 1).astype(np.int8)
    return t, s


def pack_hf(t: np.ndarray) -> np.ndarray:
    """Pack ternary int8 [out, in] into the Hugging Face offline layout uint8 [out/4, in]."""
    out_f = t.shape[0]
    if out_f % 4:
        raise ValueError(f"out_features {out_f} is not a multiple of 4")
    rows = out_f // 4
    codes = (t + 1).astype(np.uint8).reshape(4, rows, *t.shape[1:])
    return codes[0] | (codes[1] << 2) | (codes[2] << 4) | (codes[3] << 6)


def unpack_hf(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_hf: uint8 [out/4, in] -> int8 ternary [out, in]."""
    parts = [((packed >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)]
    return np.concatenate(parts, axis=0)


def i2s_padded_in(k: int) -> int:
    """Row length k rounded up to whole I2_S blocks."""
    return -(-k // I2S_BLOCK) * I2S_BLOCK


def pack_i2s(t: np.ndarray, scale: float, divisor: float | None = None) -> np.ndarray:
    """Pack ternary int8 [out, in] and its float32 scale into the I2_S byte payload.

    Any `in`: rows are padded with zeros (code 1) to whole 128-value blocks. Returns uint8
    [out * ceil(in/128) * 32 + 32].

    `divisor`, when given, is the checkpoint's own float32 divisor (transformers' BitLinear
    computes y / (weight_scale * input_scale)); it goes into bytes 4..7 of the trailer, which
    bitnet.cpp's layout leaves as zero padding. float32(1/scale) equals it for only ~80% of bf16
    values, and with the exact divisor the engine's rescale is bit-identical to the reference's.
    Readers that do not know this field see padding and use the scale.
    """
    t = np.asarray(t)
    if t.ndim != 2:
        raise ValueError(f"expected a 2-D ternary matrix [out, in], got shape {t.shape}")
    k = t.shape[1]
    if k % I2S_BLOCK:
        t = np.pad(t, ((0, 0), (0, i2s_padded_in(k) - k)))
    codes = (t.reshape(-1, 4, 32) + 1).astype(np.uint8)  # [block, group of 32, j]
    packed = (codes[:, 0] << 6) | (codes[:, 1] << 4) | (codes[:, 2] << 2) | codes[:, 3]
    return np.concatenate([packed.reshape(-1), scale_trailer(scale, divisor)])


def scale_trailer(scale: float, divisor: float | None) -> np.ndarray:
    """The 32 bytes that end an I2_S or TL tensor: float32 scale, float32 exact divisor (zeros when
    unknown), zeros."""
    tail = np.zeros(I2S_TAIL_BYTES, dtype=np.uint8)
    tail[:4] = np.frombuffer(np.float32(scale).tobytes(), dtype=np.uint8)
    if divisor is not None:
        tail[4:8] = np.frombuffer(np.float32(divisor).tobytes(), dtype=np.uint8)
    return tail


def unpack_i2s(buf: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.float32]:
    """Inverse of pack_i2s: bytes -> (int8 ternary of `shape` = (out, in), float32 scale).

    Raises ValueError for a payload of the wrong size or a reserved code 3.
    """
    rows, k = shape
    kp = i2s_padded_in(k)
    n_packed = rows * kp // 4
    buf = np.asarray(buf, dtype=np.uint8).reshape(-1)
    if buf.size != n_packed + I2S_TAIL_BYTES:
        raise ValueError(f"I2_S payload has {buf.size} bytes, expected {n_packed + I2S_TAIL_BYTES}")
    packed = buf[:n_packed].reshape(-1, 1, 32)
    codes = (packed >> np.array([6, 4, 2, 0], dtype=np.uint8).reshape(1, 4, 1)) & 3
    if (codes == 3).any():
        raise ValueError("I2_S payload holds the unused code 3")
    t = codes.astype(np.int8).reshape(rows, kp)[:, :k] - 1
    scale = np.frombuffer(buf[n_packed : n_packed + 4].tobytes(), dtype=np.float32)[0]
    return t, scale
