"""A minimal GGUF v3 reader that also knows bitnet.cpp's tensor types.

`gguf.GGUFReader` (gguf 0.19) rejects tensor type ids it does not know, and I2_S (36), TL1 (38)
and TL2 (39) are not in its enum; this reader parses header, metadata and tensor table itself
and returns each tensor's raw bytes, so tests (and tools that only need shapes, such as the TL
codegen) can read any file the converter writes. It is for inspection, not for speed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES

from bitnet.formats.tl_pack import TL_TYPE_IDS, tl_nbytes
from bitnet.formats.ternary import I2S_TAIL_BYTES, I2S_TYPE_ID, i2s_padded_in

# GGUF metadata value types -> struct format of the scalar ones.
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass
class GGUFTensor:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the contiguous (inner) dimension
    type_id: int
    data: np.ndarray  # uint8 view of the tensor's bytes in the file


@dataclass
class GGUFFile:
    version: int
    metadata: dict[str, object]
    tensors: dict[str, GGUFTensor]


def tensor_nbytes(type_id: int, ne: tuple[int, ...]) -> int:
    """Bytes a tensor of ggml type `type_id` and shape `ne` occupies in a file."""
    n = int(np.prod(ne, dtype=np.int64))
    if type_id == I2S_TYPE_ID:  # rows padded to whole blocks, 4 codes a byte, then the trailer
        return n // ne[0] * (i2s_padded_in(ne[0]) // 4) + I2S_TAIL_BYTES
    if type_id in TL_TYPE_IDS.values():  # blocks of 64 rows, see bitnet/formats/tl_pack.py
        return tl_nbytes(type_id, n // ne[0], ne[0])
    block, size = GGML_QUANT_SIZES[type_id]
    return n // block * size


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse a GGUF file; raises ValueError on a malformed or truncated one."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    raw = memoryview(buf)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(raw):
            raise ValueError(f"{path}: truncated at byte {pos}")
        (val,) = struct.unpack_from("<" + fmt, raw, pos)
        pos += size
        return val

    def take_str() -> str:
        nonlocal pos
        n = take("Q")
        if pos + n > len(raw):
            raise ValueError(f"{path}: string runs past the end of the file")
        s = bytes(raw[pos : pos + n]).decode("utf-8")
        pos += n
        return s

    def take_value(vtype: int):
        if vtype in _SCALAR:
            return take(_SCALAR[vtype])
        if vtype == _STRING:
            return take_str()
        if vtype == _ARRAY:
            sub, count = take("I"), take("Q")
            return [take_value(sub) for _ in range(count)]
        raise ValueError(f"{path}: unknown metadata value type {vtype}")

    if bytes(raw[:4]) != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    metadata = {}
    for _ in range(n_kv):
        key = take_str()
        metadata[key] = take_value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = take_str()
        ne = tuple(take("Q") for _ in range(take("I")))
        infos.append((name, ne, take("I"), take("Q")))
    align = int(metadata.get("general.alignment", 32))
    data_start = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, type_id, offset in infos:
        begin = data_start + offset
        end = begin + tensor_nbytes(type_id, ne)
        if end > len(buf):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = GGUFTensor(name, ne, type_id, buf[begin:end])
    return GGUFFile(version, metadata, tensors)
