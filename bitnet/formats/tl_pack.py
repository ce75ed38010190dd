"""Packing ternary matrices into the engine's TL1 / TL2 lookup-table layouts (GGUF types 38, 39).

The layout is specified in src/kernels/tl.h; in short, rows go in blocks of TL_BM = 64 and each
block holds all of a row's length K:

* TL1: weight pairs -> index 3(w0+1) + (w1+1) in 0..8; per pair, 32 bytes whose byte j holds
  row j's index in the low nibble and row j+32's in the high nibble (2 bits per weight).
* TL2: weight triples -> v = 9w0 + 3w1 + w2, stored as |v| in 0..13 (a nibble, same byte
  arrangement) plus 8 bytes of sign bits per triple: four little-endian uint16 words, bit l of
  word w for row tl2_sign_row(w, l) (the row order of the AVX2 kernel's byte unpack). Triples go
  in units of two: both triples' magnitudes, then their sign words interleaved (word w of the
  first, word w of the second); an odd last triple keeps its 8 sign bytes after its magnitudes.
  The last 0, 2 or 4 columns (K - tl2_k3(K)) are TL1 pairs. 1.67 bits per weight.

Both end in the 32-byte trailer of I2_S: float32 scale (W ~= T * scale), float32 exact divisor,
zeros. The file records the row block as the GGUF key TL_BLOCK_KEY and the layout's version as
TL_LAYOUT_KEY (the engine refuses another version); the engine refuses TL files
without it (bitnet.cpp's TL layout depends on the tiles of the machine that converted it, which
its files do not record). The layout does not depend on any other tile size.
"""

from __future__ import annotations

import numpy as np

from bitnet.formats.ternary import I2S_TAIL_BYTES, scale_trailer

TL1_TYPE_ID = 38  # GGML type ids bitnet.cpp gives TL1 / TL2
TL2_TYPE_ID = 39
TL_TYPE_IDS = {"tl1": TL1_TYPE_ID, "tl2": TL2_TYPE_ID}
TL_BM = 64  # rows per block
TL_TAIL_BYTES = I2S_TAIL_BYTES  # the same trailer (bitnet/formats/ternary.py scale_trailer)
TL_BLOCK_KEY = "bitnet.tl.bm"  # GGUF key: the row block the file was packed with
TL_LAYOUT_KEY = "bitnet.tl.layout"  # GGUF key: the version of this byte layout (src/kernels/tl.h TL_LAYOUT)
TL_LAYOUT = 1


def tl2_k3(k: int) -> int:
    """Columns of a TL2 row stored as triples: the largest multiple of 3 leaving an even rest."""
    k3 = k // 3 * 3
    return k3 if (k - k3) % 2 == 0 else k3 - 3


def _sign_rows() -> np.ndarray:
    """Row (within a 64-row block) of each of the 64 sign bits of a triple, in bit order."""
    w, lane = np.divmod(np.arange(64), 16)
    return 32 * (w // 2) + 8 * (w % 2) + np.where(lane < 8, lane, 8 + lane)


SIGN_ROWS = _sign_rows()

def _balanced_digits(i: int) -> tuple[int, int, int]:
    """(d0, d1, d2) in {-1, 0, 1} with 9 d0 + 3 d1 + d2 = i (unique for 0 <= i <= 13)."""
    d2 = (i + 1) % 3 - 1
    r = (i - d2) // 3
    d1 = (r + 1) % 3 - 1
    return (r - d1) // 3, d1, d2


_DIGITS = np.array([_balanced_digits(i) for i in range(14)], dtype=np.int8)  # magnitude -> digits


def tl_nbytes(type_id: int, rows: int, k: int) -> int:
    """Bytes of a TL1/TL2 tensor of `rows` rows of length k (the engine's type_nbytes)."""
    check_tl_shape(type_id, rows, k)
    if type_id == TL1_TYPE_ID:
        block = k // 2 * 32
    else:
        k3 = tl2_k3(k)
        block = k3 // 3 * 40 + (k - k3) // 2 * 32
    return rows // TL_BM * block + TL_TAIL_BYTES


def check_tl_shape(type_id: int, rows: int, k: int) -> None:
    """Raise ValueError when a rows x k matrix cannot be stored as TL1/TL2."""
    name = "TL1" if type_id == TL1_TYPE_ID else "TL2"
    if rows % TL_BM:
        raise ValueError(f"{name} stores rows in blocks of {TL_BM}; {rows} rows is not a multiple")
    if (type_id == TL1_TYPE_ID and k % 2) or k < 2:
        raise ValueError(f"{name} cannot store rows of length {k} (TL1 needs an even length, TL2 at least 2)")


def _nibbles(idx: np.ndarray) -> np.ndarray:
    """Indexes [rows, groups] (< 16) -> bytes [blocks, groups, 32] (rows j, j+32 per byte)."""
    b = idx.reshape(idx.shape[0] // TL_BM, TL_BM, idx.shape[1]).transpose(0, 2, 1).astype(np.uint8)
    return b[..., :32] | (b[..., 32:] << 4)


def _pair_index(t: np.ndarray) -> np.ndarray:
    return 3 * (t[:, 0::2].astype(np.int16) + 1) + (t[:, 1::2] + 1)


def _check_ternary(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    if t.ndim != 2:
        raise ValueError(f"expected a 2-D ternary matrix [out, in], got shape {t.shape}")
    if t.size and (t.min() < -1 or t.max() > 1):
        raise ValueError("the matrix has values outside {-1, 0, +1}")
    return t.astype(np.int8)


def pack_tl(t: np.ndarray, type_id: int, scale: float, divisor: float | None = None) -> np.ndarray:
    """Pack ternary int8 [out, in] and its float32 scale as TL1/TL2 (uint8 payload).

    `divisor`: the checkpoint's exact float32 divisor, stored as in pack_i2s. Raises ValueError
    for a shape the type cannot hold or values outside {-1, 0, 1}.
    """
    t = _check_ternary(t)
    rows, k = t.shape
    check_tl_shape(type_id, rows, k)
    blocks = rows // TL_BM
    if type_id == TL1_TYPE_ID:
        body = _nibbles(_pair_index(t)).reshape(blocks, -1)
    else:
        k3 = tl2_k3(k)
        v = 9 * t[:, 0:k3:3].astype(np.int16) + 3 * t[:, 1:k3:3] + t[:, 2:k3:3]
        mags = _nibbles(np.abs(v))  # [blocks, triples, 32]
        neg = (v < 0).reshape(blocks, TL_BM, v.shape[1]).transpose(0, 2, 1)[..., SIGN_ROWS]
        signs = np.packbits(neg, axis=-1, bitorder="little")  # [blocks, triples, 8]
        triples = _units(mags, signs).reshape(blocks, -1)
        pairs = _nibbles(_pair_index(t[:, k3:])).reshape(blocks, -1)
        body = np.concatenate([triples, pairs], axis=1)
    return np.concatenate([body.reshape(-1), scale_trailer(scale, divisor)])


def _units(mags: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Per-triple magnitudes [blocks, n3, 32] and sign words [blocks, n3, 8] -> [blocks, n3, 40]
    bytes in the unit order: pairs of triples with their sign words interleaved."""
    blocks, n3 = mags.shape[:2]
    u = n3 // 2
    pairs_m = mags[:, :2 * u].reshape(blocks, u, 64)
    pairs_s = signs[:, :2 * u].reshape(blocks, u, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(blocks, u, 16)
    out = [np.concatenate([pairs_m, pairs_s], axis=-1).reshape(blocks, 2 * u, 40)]
    if n3 % 2:
        out.append(np.concatenate([mags[:, -1:], signs[:, -1:]], axis=-1))
    return np.concatenate(out, axis=1)


def _from_units(body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of _units: [blocks, n3, 40] unit-order bytes -> (magnitudes [.., 32], signs [.., 8])."""
    blocks, n3 = body.shape[:2]
    u = n3 // 2
    pairs = body[:, :2 * u].reshape(blocks, u, 80)
    mags = [pairs[..., :64].reshape(blocks, 2 * u, 32)]
    signs = [pairs[..., 64:].reshape(blocks, u, 4, 2, 2).transpose(0, 1, 3, 2, 4).reshape(blocks, 2 * u, 8)]
    if n3 % 2:
        mags.append(body[:, -1:, :32])
        signs.append(body[:, -1:, 32:])
    return np.concatenate(mags, axis=1), np.concatenate(signs, axis=1)


def _unnibble(b: np.ndarray) -> np.ndarray:
    """Bytes [blocks, groups, 32] -> indexes [rows, groups]."""
    idx = np.concatenate([b & 0x0F, b >> 4], axis=-1)  # [blocks, groups, 64]
    return idx.transpose(0, 2, 1).reshape(b.shape[0] * TL_BM, b.shape[1])


def _pairs_from_index(idx: np.ndarray) -> np.ndarray:
    if (idx > 8).any():
        raise ValueError("a TL pair index is larger than 8")
    out = np.empty((idx.shape[0], idx.shape[1] * 2), dtype=np.int8)
    out[:, 0::2] = idx // 3 - 1
    out[:, 1::2] = idx % 3 - 1
    return out


def unpack_tl(buf: np.ndarray, type_id: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.float32]:
    """Inverse of pack_tl: bytes -> (int8 ternary of `shape` = (out, in), float32 scale).

    Raises ValueError for a payload of the wrong size or an index no ternary group has.
    """
    rows, k = shape
    buf = np.asarray(buf, dtype=np.uint8).reshape(-1)
    if buf.size != tl_nbytes(type_id, rows, k):
        raise ValueError(f"TL payload of {buf.size} bytes, expected {tl_nbytes(type_id, rows, k)} for {shape}")
    blocks = rows // TL_BM
    body = buf[:-TL_TAIL_BYTES].reshape(blocks, -1)
    scale = np.frombuffer(buf[-TL_TAIL_BYTES:][:4].tobytes(), dtype=np.float32)[0]
    if type_id == TL1_TYPE_ID:
        return _pairs_from_index(_unnibble(body.reshape(blocks, -1, 32))), scale
    k3 = tl2_k3(k)
    n3 = k3 // 3
    mag_bytes, sign_bytes = _from_units(body[:, :n3 * 40].reshape(blocks, n3, 40))
    mags = _unnibble(mag_bytes)  # [rows, triples]
    if (mags > 13).any():
        raise ValueError("a TL2 magnitude is larger than 13")
    bits = np.unpackbits(sign_bytes, axis=-1, bitorder="little")  # [blocks, triples, 64]
    neg = np.empty_like(bits)
    neg[..., SIGN_ROWS] = bits
    sign = np.where(neg.transpose(0, 2, 1).reshape(rows, n3), -1, 1).astype(np.int8)
    t = np.empty((rows, k), dtype=np.int8)
    for d in range(3):
        t[:, d:k3:3] = _DIGITS[mags, d] * sign
    t[:, k3:] = _pairs_from_index(_unnibble(body[:, n3 * 40:].reshape(blocks, -1, 32)))
    return t, scale
