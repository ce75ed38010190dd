// The tensor type table: one row per GGUF/ggml type id this engine can size, plus the exact
// fp16 <-> fp32 conversions and the row dequantizer (embedding lookup, norm weights).
//
// The table answers "how many bytes does this tensor occupy in the file" for the GGUF reader and
// "what is this type called" for error messages. Adding a type is adding a row (and, if it has a
// block layout, a block struct in kernels/quants.h whose size the compiler checks). Which types the model can
// actually compute with is decided by the model loader and the kernels, not here.
#include "kernels/kernels.h"

#include <cstring>

#include "kernels/quants.h"
#include "kernels/tl.h"
#include "util/common.h"

namespace bitnet {

namespace {

// The block layouts live in kernels/quants.h (static_asserts on their sizes there); I2_S is
// bitnet.cpp's: 128 values of 2 bits in 32 bytes, no per-block scale, the per-tensor float32 scale
// in a 32-byte trailer after all blocks.
static_assert(I2S_BLOCK / 4 == 32, "I2_S block is 128 values x 2 bits = 32 bytes");

const TypeTraits k_types[] = {
    // id          name     block  bytes  trailer
    {TYPE_F32,   "F32",   1,     4,     0},
    {TYPE_F16,   "F16",   1,     2,     0},
    {TYPE_Q4_0,  "Q4_0",  32,    sizeof(block_q4_0),  0},
    {TYPE_Q8_0,  "Q8_0",  32,    sizeof(block_q8_0),  0},
    {TYPE_Q6_K,  "Q6_K",  QK_K,  sizeof(block_q6_K),  0},
    {TYPE_BF16,  "BF16",  1,     2,     0},
    {TYPE_TQ1_0, "TQ1_0", QK_K,  sizeof(block_tq1_0), 0},
    {TYPE_TQ2_0, "TQ2_0", QK_K,  sizeof(block_tq2_0), 0},
    {TYPE_I2_S,  "I2_S",  I2S_BLOCK, I2S_BLOCK / 4, I2S_TRAILER},
    // TL1/TL2 are stored in blocks of TL_BM rows whose size depends on the row length: sized by
    // tl_nbytes below from the formulas of kernels/tl.h, not from this row.
    {TYPE_TL1,   "TL1",   1,     0,     TL_TRAILER},
    {TYPE_TL2,   "TL2",   1,     0,     TL_TRAILER},
};

std::string known_type_names() {
    std::string s;
    for (const TypeTraits& t : k_types) {
        if (!s.empty()) s += ", ";
        s += t.name;
    }
    return s;
}

uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

size_t tl_nbytes(uint32_t type, int64_t ne0, int64_t n_elements, const std::string& what) {
    const char* name = type == TYPE_TL1 ? "TL1" : "TL2";
    const int64_t rows = n_elements / ne0;
    if (rows % TL_BM != 0)
        fail("%s: %lld rows, but %s stores rows in blocks of %lld: convert the model again with "
             "--outtype i2_s", what.c_str(), (long long)rows, name, (long long)TL_BM);
    if (type == TYPE_TL1 ? ne0 % 2 != 0 : ne0 < 2)
        fail("%s: row length %lld cannot be stored as %s (it needs %s): convert the model again "
             "with --outtype i2_s", what.c_str(), (long long)ne0, name,
             type == TYPE_TL1 ? "an even length" : "at least 2 values");
    const int64_t block = type == TYPE_TL1 ? tl1_block_bytes(ne0) : tl2_block_bytes(ne0);
    if ((uint64_t)(rows / TL_BM) > (SIZE_MAX - TL_TRAILER) / (uint64_t)block)
        fail("%s: %lld values of %s do not fit in memory", what.c_str(), (long long)n_elements, name);
    return (size_t)(rows / TL_BM) * (size_t)block + TL_TRAILER;
}

}  // namespace

const TypeTraits* type_traits(uint32_t type) {
    for (const TypeTraits& t : k_types)
        if (t.id == type) return &t;
    return nullptr;
}

std::string type_name(uint32_t type) {
    const TypeTraits* t = type_traits(type);
    return t ? std::string(t->name) : strfmt("type %u", type);
}

size_t type_nbytes(uint32_t type, int64_t ne0, int64_t n_elements, const std::string& what) {
    const TypeTraits* t = type_traits(type);
    if (!t)
        fail("%s has unknown type id %u (this build knows: %s)", what.c_str(), type,
             known_type_names().c_str());
    BITNET_ASSERT(ne0 > 0 && n_elements >= ne0 && n_elements % ne0 == 0);
    if (type == TYPE_TL1 || type == TYPE_TL2) return tl_nbytes(type, ne0, n_elements, what);
    // I2_S pads each row to whole blocks (see I2S_BLOCK); the other types need whole blocks.
    const bool padded = type == TYPE_I2_S;
    if (!padded && ne0 % t->block_size != 0)
        fail("%s: row length %lld is not a multiple of %lld, which %s requires: convert the model "
             "again with --outtype f16, or pad the rows to a multiple of %lld",
             what.c_str(), (long long)ne0, (long long)t->block_size, t->name,
             (long long)t->block_size);
    const uint64_t blocks_per_row = (uint64_t)(ne0 / t->block_size + (ne0 % t->block_size != 0));
    // rows * blocks_per_row <= n_elements fits in int64, but the byte count (4 bytes per F32
    // value) may not fit size_t.
    const uint64_t n_blocks = (uint64_t)(n_elements / ne0) * blocks_per_row;
    if (n_blocks > (SIZE_MAX - t->trailer_bytes) / t->block_bytes)
        fail("%s: %lld values of %s do not fit in memory", what.c_str(), (long long)n_elements,
             t->name);
    return (size_t)n_blocks * t->block_bytes + t->trailer_bytes;
}

float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    if (exp == 0x1f)  // inf, or NaN with its payload kept in the top mantissa bits
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        // zero or subnormal: mant * 2^-24, exact in float32 (mant has at most 10 bits)
        const float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    // normal: rebias the exponent from 15 to 127
    return bits_f32(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
}

uint16_t fp32_to_fp16(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7fffffffu;

    if (ax > 0x7f800000u) {
        // NaN: keep the top payload bits and force the quiet bit so the result stays a NaN even
        // when the payload lives only in the low 13 bits.
        return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    }
    // 65520 = 0x477ff000 is halfway between the largest half (65504) and 2^16; ties go to the
    // even mantissa, i.e. up to infinity, so everything from there on overflows (inf included).
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);

    if (ax >= 0x38800000u) {
        // Normal half (|f| >= 2^-14). Rebias the exponent, keep 10 mantissa bits, round to nearest
        // even on the 13 dropped bits; a carry out of the mantissa correctly bumps the exponent.
        uint32_t h = (ax - ((127u - 15u) << 23)) >> 13;
        const uint32_t rest = ax & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    // 2^-25 is half of the smallest subnormal (2^-24) and rounds to even, i.e. to zero.
    if (ax <= 0x33000000u) return sign;

    // Subnormal half: the result is round(|f| / 2^-24). With the implicit bit restored,
    // |f| = m * 2^(e-150), so |f| / 2^-24 = m >> (126 - e), shift in [14, 24] here.
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;
    uint32_t h = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (h & 1u))) h++;  // 0x3ff + 1 becomes the smallest normal
    return (uint16_t)(sign | h);
}

namespace {

// One block of each quantized type to floats, value by value (kernels/quants.h's decoders).
void dequant_block(const block_q8_0& x, float* y) {
    const float d = fp16_to_fp32(x.d);
    for (int i = 0; i < QK8_0; ++i) y[i] = d * (float)q8_0_value(x, i);
}

void dequant_block(const block_q4_0& x, float* y) {
    const float d = fp16_to_fp32(x.d);
    for (int i = 0; i < QK8_0; ++i) y[i] = d * (float)q4_0_value(x, i);
}

void dequant_block(const block_q6_K& x, float* y) {
    const float d = fp16_to_fp32(x.d);
    for (int i = 0; i < QK_K; ++i) y[i] = d * (float)x.scales[i / 16] * (float)q6_K_value(x, i);
}

void dequant_block(const block_tq2_0& x, float* y) {
    const float d = fp16_to_fp32(x.d);
    for (int i = 0; i < QK_K; ++i) y[i] = d * (float)(tq2_0_code(x, i) - 1);
}

void dequant_block(const block_tq1_0& x, float* y) {
    const float d = fp16_to_fp32(x.d);
    for (int i = 0; i < QK_K; ++i) y[i] = d * (float)(tq1_0_code(x, i) - 1);
}

template <typename Block>
void dequant_blocks(const void* data, int64_t k, int64_t row, int64_t bs, float* out) {
    const Block* x = (const Block*)data + row * (k / bs);
    for (int64_t b = 0; b < k / bs; ++b) dequant_block(x[b], out + b * bs);
}

}  // namespace

void dequantize_row(uint32_t type, const void* data, int64_t k, int64_t row, float* out) {
    switch (type) {
    case TYPE_F32:
        std::memcpy(out, (const float*)data + row * k, (size_t)k * sizeof(float));
        return;
    case TYPE_F16: {
        const uint16_t* src = (const uint16_t*)data + row * k;
        for (int64_t i = 0; i < k; i++) out[i] = fp16_to_fp32(src[i]);
        return;
    }
    case TYPE_BF16: {
        // bf16 is the top half of a float32
        const uint16_t* src = (const uint16_t*)data + row * k;
        for (int64_t i = 0; i < k; i++) out[i] = bits_f32((uint32_t)src[i] << 16);
        return;
    }
    case TYPE_Q8_0: return dequant_blocks<block_q8_0>(data, k, row, QK8_0, out);
    case TYPE_Q4_0: return dequant_blocks<block_q4_0>(data, k, row, QK8_0, out);
    case TYPE_Q6_K: return dequant_blocks<block_q6_K>(data, k, row, QK_K, out);
    case TYPE_TQ1_0: return dequant_blocks<block_tq1_0>(data, k, row, QK_K, out);
    case TYPE_TQ2_0: return dequant_blocks<block_tq2_0>(data, k, row, QK_K, out);
    default:
        fail("cannot read rows of a %s tensor as floats (only F32, F16, BF16, Q8_0, Q4_0, Q6_K, "
             "TQ1_0 and TQ2_0): convert the model again with --outtype f16",
             type_name(type).c_str());
    }
}

}  // namespace bitnet
