// llama.cpp's block-quantized tensor types (Q8_0, Q4_0, Q6_K, TQ1_0, TQ2_0): their block layouts,
// the activation format their dot products consume, and the matmul kernels behind one dispatch
// table of their own (QuantKernelSet), chosen with the same ISA as kernels().
//
// Two families:
//  - float matrices (the embedding/output layer) in Q8_0, Q4_0, Q6_K: the activations are quantized
//    per block to int8 as llama.cpp does (blocks of 32 for Q8_0/Q4_0, of 256 for Q6_K), each block
//    product is an exact integer, and the blocks are summed in float32. SIMD variants may sum the
//    blocks in another order than the reference, so they differ from it by float rounding only.
//  - ternary matrices (BitLinear) in TQ1_0, TQ2_0: codes 0/1/2 stand for -1/0/+1 times the block's
//    fp16 scale d, and the activations are the per-token int8 of quantize_act. When every block of
//    a tensor has the same d (BitNet checkpoints: d is the tensor's scale), the *_i32 kernels give
//    the raw integer code products, exactly like i2s_gemm, and the caller rescales once; otherwise
//    the *_f32 kernels sum d_b * (integer block product) in block order. Both are bit-exact across
//    ISAs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bitnet {

constexpr int64_t QK8_0 = 32;  // values per Q8_0 / Q4_0 block
constexpr int64_t QK_K = 256;  // values per k-quant / TQ super-block

// Block layouts, byte for byte those of llama.cpp's ggml-common.h (uint16_t stands for ggml_half),
// so files interoperate. The sizes are those of gguf-py's GGML_QUANT_SIZES.
struct block_q8_0 {
    uint16_t d;       // scale: value = qs[i] * d
    int8_t qs[32];
};
static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 2 + 32 bytes");

struct block_q4_0 {
    uint16_t d;       // scale: value = (nibble - 8) * d
    uint8_t qs[16];   // value i < 16 in the low nibble of qs[i], value i + 16 in its high nibble
};
static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 2 + 32/2 bytes");

struct block_q6_K {
    // value = d * scales[i / 16] * (q6 - 32), q6 = 4 low bits from ql and 2 high bits from qh:
    // in each half h of 128 values, value 128h + 32j + l (j < 4, l < 32) takes the low nibble
    // (j even) or high nibble (j odd) of ql[64h + 32(j & 1) + l] and bits 2j..2j+1 of qh[32h + l].
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
};
static_assert(sizeof(block_q6_K) == 210, "Q6_K block is 128 + 64 + 16 + 2 bytes");

struct block_tq1_0 {
    // Base-3 digits (codes 0/1/2 = -1/0/+1, times d). A byte holds the digits of 5 values (4 in qh)
    // as the fraction ceil(Σ digit_i 3^(4-i) * 256 / 243); digit i is the top digit of the byte
    // times 3^i mod 256, i.e. ((byte * 3^i mod 256) * 3) >> 8. Value 32i + m (i < 5, m < 32) is
    // digit i of qs[m]; value 160 + 16i + m (m < 16) digit i of qs[32 + m]; value 240 + 4i + j
    // (i, j < 4) digit i of qh[j].
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5];
    uint8_t qh[QK_K / 64];
    uint16_t d;
};
static_assert(sizeof(block_tq1_0) == 54, "TQ1_0 block is 48 + 4 + 2 bytes");

struct block_tq2_0 {
    // Codes 0/1/2 = -1/0/+1 (times d); value 128c + 32l + m (c < 2, l < 4, m < 32) is bits
    // 2l..2l+1 of qs[32c + m] (the reverse bit-pair order of I2_S).
    uint8_t qs[QK_K / 4];
    uint16_t d;
};
static_assert(sizeof(block_tq2_0) == 66, "TQ2_0 block is 64 + 2 bytes");

// Value i of a block as its layout stores it, one at a time: the definition the reference
// kernels (quants_ref.cpp) and the row dequantizer (types.cpp) share; the SIMD kernels decode
// whole vectors instead. Float types: the integer the block scale multiplies (Q6_K: before its
// sub-block scale). Ternary types: the code 0/1/2. Internal linkage, as in x86/simd_x86.h: a file
// built with AVX-512 flags must not lend its copy to the others.
namespace {
inline int q8_0_value(const block_q8_0& x, int i) { return x.qs[i]; }
inline int q4_0_value(const block_q4_0& x, int i) {
    return (i < 16 ? (x.qs[i] & 0x0F) : (x.qs[i - 16] >> 4)) - 8;
}
inline int q6_K_value(const block_q6_K& x, int i) {
    const int h = i / 128, j = (i % 128) / 32, l = i % 32;
    const uint8_t ql = x.ql[64 * h + 32 * (j & 1) + l];
    const int lo = (j & 2) ? (ql >> 4) : (ql & 0x0F);
    const int hi = (x.qh[32 * h + l] >> (2 * j)) & 3;
    return (lo | (hi << 4)) - 32;
}
inline int tq2_0_code(const block_tq2_0& x, int i) {
    return (x.qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
}
inline int tq1_0_code(const block_tq1_0& x, int i) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t byte;
    int digit;
    if (i < 160) {
        byte = x.qs[i % 32];
        digit = i / 32;
    } else if (i < 240) {
        byte = x.qs[32 + (i - 160) % 16];
        digit = (i - 160) / 16;
    } else {
        byte = x.qh[(i - 240) % 4];
        digit = (i - 240) / 4;
    }
    const uint8_t v = (uint8_t)(byte * pow3[digit]);  // mod 256: drops the digits above
    return (v * 3) >> 8;
}
}  // namespace

// Activations of N tokens quantized per block of `bs` values (32: "q8_0", 256: "q8_K"):
//   d = absmax / 127, q = rint(x / d) (so |q| <= 127), x ≈ q * d.
// A block holding a NaN or an infinity gets q = 0 and d = NaN, so the products it feeds come out
// NaN, as in a float model (never a NaN converted to int8, which is undefined behaviour).
// bsum holds sums of 16 consecutive q (only filled for bs = 256: Q6_K's -32 offset needs them).
struct ActBlocks {
    std::vector<int8_t> q;      // (n, k)
    std::vector<float> d;       // (n, k / bs)
    std::vector<int16_t> bsum;  // (n, k / 16) when bs == 256
    int64_t n = 0, k = 0, bs = 0;
};

// Sizes a for n rows of k values in blocks of bs (32 or 256; k a multiple of bs).
void act_blocks_resize(ActBlocks& a, int64_t n, int64_t k, int64_t bs);
// Quantizes x[0..a.k) into row `row` of a. Portable, one implementation for every ISA: its cost is
// O(k) per token, negligible beside the matmul it feeds.
void act_blocks_quantize_row(const float* x, ActBlocks& a, int64_t row);

// The block size of the activations a float-weight type needs (32 or 256), 0 for other types.
int64_t act_block_size(uint32_t type);

// Float-weight products for rows [m0, m1) of an M x K block-quantized matrix W (K / block_size
// blocks per row, rows contiguous) against the N tokens of A (A.k == K):
//   Y[n*ldy + m] = Σ_b dW_b * dA_{n,b} * Σ_{k in b} w_k * q_{n,k}     (blocks summed in float32)
using qgemm_fn = void (*)(const uint8_t* W, int64_t K, const ActBlocks& A, float* Y, int64_t ldy,
                          int64_t m0, int64_t m1);

// Ternary products for rows [m0, m1) of an M x K TQ1_0/TQ2_0 matrix against N int8 token rows
// (row n at Q + n*ldq, K a multiple of 256):
//   i32: out[n*ldo + m] = Σ_k code(W[m,k]) * Q[n,k]            unsigned codes 0/1/2, as i2s_gemm
//   f32: out[n*ldo + m] = Σ_b d_b * Σ_{k in b} (code - 1) * Q[n,k]   d_b in float32, summed in
//        block order starting from 0, each term rounded once: bit-exact on every ISA
using tq_gemm_i32_fn = void (*)(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq,
                                int64_t N, int32_t* out, int64_t ldo, int64_t m0, int64_t m1);
using tq_gemm_f32_fn = void (*)(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq,
                                int64_t N, float* out, int64_t ldo, int64_t m0, int64_t m1);

struct QuantKernelSet {
    const char* isa;  // the same names as KernelSet::isa
    qgemm_fn q8_0_gemm, q4_0_gemm, q6_K_gemm;
    tq_gemm_i32_fn tq1_0_gemm_i32, tq2_0_gemm_i32;
    tq_gemm_f32_fn tq1_0_gemm_f32, tq2_0_gemm_f32;
};

// Scalar reference set: the oracle of the tests, and the fallback.
const QuantKernelSet& quant_kernels_ref();
// Every set compiled in and supported by this CPU (those of kernels_available()), reference first.
std::vector<const QuantKernelSet*> quant_kernels_available();
// The set of the same ISA as kernels() (so BITNET_ISA picks both).
const QuantKernelSet& quant_kernels();

// Per-thread scratch of at least n elements for the SIMD kernels, valid until the thread's next
// call. Defined in quants_ref.cpp, compiled without ISA flags: std::vector code instantiated in an
// AVX-512 file could be the copy the linker keeps for every caller.
int8_t* quant_scratch_i8(size_t n);
int32_t* quant_scratch_i32(size_t n);

// The float-weight gemm of `type` (Q8_0, Q4_0, Q6_K) in set ks, nullptr for other types.
qgemm_fn quant_gemm_for(const QuantKernelSet& ks, uint32_t type);

// Quantizes one row x[0..k) of a float matrix into `type` (Q8_0, Q4_0, Q6_K; k a multiple of its
// block size), quant_row_bytes(type, k) bytes at out: round to nearest per block (quants_pack.cpp).
// Throws bitnet::Error for another type.
void quantize_weight_row(uint32_t type, const float* x, int64_t k, uint8_t* out);

// Row bytes of a TQ1_0/TQ2_0/Q* matrix row of k values (k a multiple of the block size).
size_t quant_row_bytes(uint32_t type, int64_t k);

// The fp16 scale d of block b of a TQ1_0/TQ2_0 row.
float tq_block_d(uint32_t type, const uint8_t* row, int64_t b);

}  // namespace bitnet
