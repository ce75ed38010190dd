// Tensor type table and the compute kernels the model uses, behind one dispatch table.
//
// Every kernel family has a scalar reference (`*_ref`, the oracle the tests compare against) and
// ISA variants (AVX2, AVX-512 VNNI, ...) compiled in separate files with their own flags; the best
// one for this CPU is chosen once, from CPUID, by kernels(). The integer kernels must be bit-exact
// with the reference; the float kernels may differ from it only by summation order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace bitnet {

// ggml/GGUF type ids (bitnet.cpp numbering for the ternary types).
enum TensorType : uint32_t {
    TYPE_F32 = 0,
    TYPE_F16 = 1,
    TYPE_Q4_0 = 2,
    TYPE_Q8_0 = 8,
    TYPE_Q6_K = 14,
    TYPE_BF16 = 30,
    TYPE_TQ1_0 = 34,
    TYPE_TQ2_0 = 35,
    TYPE_I2_S = 36,
    TYPE_TL1 = 38,  // lookup-table ternary types, layouts in kernels/tl.h
    TYPE_TL2 = 39,
};

// I2_S: 2-bit codes (0 -> -1, 1 -> 0, 2 -> +1) in blocks of 128 values / 32 bytes; byte j of a
// block holds values j, j+32, j+64, j+96 in bit pairs 7-6, 5-4, 3-2, 1-0. One float32 scale
// (the dequantized magnitude of a +1) follows the packed bytes; the tensor is n/4 + 32 bytes.
// Our converter also puts the reference model's exact float32 divisor (≈ 1/scale) in trailer bytes
// 4..7, which are zero padding in bitnet.cpp's files; the engine uses it when present.
// A row whose length K is not a multiple of 128 (bitnet.cpp cannot store those) is padded to whole
// blocks with code 1 (weight 0): rows are i2s_padded_k(K) / 4 bytes, full blocks unchanged.
constexpr int64_t I2S_BLOCK = 128;
constexpr size_t I2S_TRAILER = 32;
inline int64_t i2s_padded_k(int64_t k) { return (k + I2S_BLOCK - 1) / I2S_BLOCK * I2S_BLOCK; }

struct TypeTraits {
    uint32_t id;
    const char* name;
    int64_t block_size;   // values per block
    size_t block_bytes;   // bytes per block
    size_t trailer_bytes; // bytes after the blocks of the whole tensor (I2_S scale)
};

// nullptr for a type id this engine does not know.
const TypeTraits* type_traits(uint32_t type);
std::string type_name(uint32_t type);  // "I2_S", or "type 77" for an unknown id

// Bytes a tensor of `type` with row length ne0 and n_elements values occupies in a file (I2_S:
// rows padded to whole blocks, plus the trailer). Throws bitnet::Error (naming `what`) when the
// type is unknown or ne0 is not a multiple of its block size (I2_S accepts any ne0; TL1/TL2 need
// whole blocks of TL_BM rows, see kernels/tl.h).
size_t type_nbytes(uint32_t type, int64_t ne0, int64_t n_elements, const std::string& what);

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);

// Row `row` of a 2-D tensor with rows of length k, as float: F32, F16, BF16 and the block types
// Q8_0, Q4_0, Q6_K, TQ1_0, TQ2_0 (k a multiple of their block size). Throws for other types.
void dequantize_row(uint32_t type, const void* data, int64_t k, int64_t row, float* out);

// ---- kernel signatures ----------------------------------------------------------------------

// Per-token int8 quantization of activations, exactly as BitNet b1.58 (and torch) do it:
//   s = 127 / max(max|x|, 1e-5);  q = clamp(rint(x * s), -128, 127)   (float32, half to even)
// torch evaluates `127 / t` as t.reciprocal() * 127 (two roundings), so s is computed as
// (1 / max) * 127: a single division differs from torch in about a quarter of the rows.
// Writes q[0..k), *scale = s and *qsum = Σ q (used to undo the +1 offset of I2_S codes).
// A row holding a NaN or an infinity (a broken model, or activations that overflowed) has no
// absmax to scale by: it quantizes to q = 0, qsum = 0 and *scale = 0, so every product of the
// token comes out 0 / 0 = NaN downstream, as in a float model, instead of an arbitrary integer.
// Every variant detects it the same way (the largest |x| bit pattern, compared as an integer:
// above 0x7f7fffff, the largest finite float, means inf or NaN); finite rows are unaffected.
using quantize_act_fn = void (*)(const float* x, int64_t k, int8_t* q, float* scale, int32_t* qsum);

// Raw I2_S products for rows [m0, m1) of a packed M x K matrix W (K/4 bytes per row, K a
// multiple of 128) against N int8 activation rows:
//   out[n*ldo + m] = Σ_k code(W[m,k]) * Q[n*ldq + k]      codes are the unsigned 0/1/2
// The caller turns this into a ternary product with (out - qsum[n]).
using i2s_gemm_fn = void (*)(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                             int32_t* out, int64_t ldo, int64_t m0, int64_t m1);

// Float products for rows [m0, m1) of an M x K F32 or F16 matrix against N float rows:
//   Y[n*ldy + m] = Σ_k W[m,k] * X[n*ldx + k]
using f32_gemm_fn = void (*)(const float* W, int64_t K, const float* X, int64_t ldx, int64_t N,
                             float* Y, int64_t ldy, int64_t m0, int64_t m1);
using f16_gemm_fn = void (*)(const uint16_t* W, int64_t K, const float* X, int64_t ldx, int64_t N,
                             float* Y, int64_t ldy, int64_t m0, int64_t m1);

// Float bit patterns, for the quantizers' finite check. Internal linkage on purpose, as in
// x86/simd_x86.h: a file built with AVX-512 flags must not lend its copy to the others.
namespace {
constexpr uint32_t kMaxFiniteBits = 0x7f7fffffu;  // |x| patterns above FLT_MAX's are inf or NaN
inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
inline float float_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
}  // namespace

struct KernelSet {
    const char* isa;  // "scalar", "avx2", "avx512vnni", "neon", "neon-dotprod"
    quantize_act_fn quantize_act;
    i2s_gemm_fn i2s_gemm;
    f32_gemm_fn f32_gemm;
    f16_gemm_fn f16_gemm;
};

// Reference set (scalar, portable).
const KernelSet& kernels_ref();
// Every set compiled in and supported by this CPU, reference first.
std::vector<const KernelSet*> kernels_available();
// The set the engine uses: the best supported one, or the one named by the environment variable
// BITNET_ISA (scalar | avx2 | avx512vnni | neon | neon-dotprod); an unknown or unsupported name
// is a bitnet::Error.
const KernelSet& kernels();

}  // namespace bitnet
