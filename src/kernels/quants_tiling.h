// The gemm drivers of the llama.cpp block types, written once for every ISA: each ISA's
// quants_*.cpp supplies only its block kernels (the decoding of one weight row against a tile of
// tokens) and gets its QuantKernelSet from quant_kernel_set. Included by those files, so all of it
// is compiled with that ISA's flags.
//
// Tokens are taken in the chunks of tiled_gemm (tiling.h): activations of about 256 KiB, a row
// dotted with up to 4 tokens at a time, so a weight block is decoded once for those tokens; with
// one token every weight is read exactly once. The ternary kernels first lay out each chunk's
// activations as their block kernels read them (tq1_permute, tq_block_sums).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/quants.h"
#include "kernels/tiling.h"
#include "util/common.h"

namespace bitnet {

// Internal linkage: each ISA's copy is compiled with its own flags and must never be merged by the
// linker with another ISA's copy (the AVX-512 one would then run on a CPU without AVX-512).
namespace {

// Sums of each 256-value block of tokens [n0, n1) (row n at Q + n*ldq) into bsum[(n-n0)*nb + b]
// ((n1 - n0) * K/256 entries): the TQ *_f32 kernels subtract them to turn code products into
// ternary ones.
inline void tq_block_sums(const int8_t* Q, int64_t ldq, int64_t K, int64_t n0, int64_t n1,
                          int32_t* bsum) {
    const int64_t nb = K / QK_K;
    for (int64_t n = n0; n < n1; ++n)
        for (int64_t b = 0; b < nb; ++b) {
            const int8_t* q = Q + n * ldq + b * QK_K;
            int32_t s = 0;
            for (int i = 0; i < QK_K; ++i) s += q[i];
            bsum[(n - n0) * nb + b] = s;
        }
}

// TQ1_0 activations rearranged to match the SIMD view of a block: the 52 bytes qs[0..48) qh[0..4)
// loaded as one 64-byte vector (zero past byte 52) give, multiplied by 3^i, the digits i of 52
// values at once. For each 256-value block and digit i < 5 the layout holds 64 bytes:
//   [0, 32)   values 32i + m          (digit i of qs[m])
//   [32, 48)  values 160 + 16i + m    (digit i of qs[32 + m])
//   [48, 52)  values 240 + 4i + j     (digit i of qh[j]; zero for i = 4, qh has 4 digits)
//   [52, 64)  zero
constexpr int64_t kTq1PermBlock = 5 * 64;

// Writes tokens [n0, n1) in that layout to out ((n1 - n0) * K/256 * kTq1PermBlock bytes).
inline void tq1_permute(const int8_t* Q, int64_t ldq, int64_t K, int64_t n0, int64_t n1,
                        int8_t* out) {
    const int64_t nb = K / QK_K;
    std::memset(out, 0, (size_t)((n1 - n0) * nb * kTq1PermBlock));
    for (int64_t n = n0; n < n1; ++n)
        for (int64_t b = 0; b < nb; ++b) {
            const int8_t* q = Q + n * ldq + b * QK_K;
            int8_t* p = out + ((n - n0) * nb + b) * kTq1PermBlock;
            for (int i = 0; i < 5; ++i, p += 64) {
                std::memcpy(p, q + 32 * i, 32);
                std::memcpy(p + 32, q + 160 + 16 * i, 16);
                if (i < 4) std::memcpy(p + 48, q + 240 + 4 * i, 4);
            }
        }
}

// ---- drivers -----------------------------------------------------------------------------------
//
// A block kernel is a struct of static members, defined by the ISA's file.
//
// Float-weight types (Q8_0, Q4_0, Q6_K), for act_gemm:
//   using Block;     block_q8_0, block_q4_0 or block_q6_K
//   template <int NT> static void dot(const Block* row, int64_t nb, const ActBlocks& A, int64_t n,
//                                     float* res);
//                    res[t] = Σ_b dW_b * dA_{n+t,b} * (integer product of block b) for t < NT,
//                    over the nb blocks of the row
//
// Ternary types (TQ1_0, TQ2_0), for tq_gemm:
//   using Block;     block_tq1_0 or block_tq2_0
//   using Acc;       integer accumulator of one token, zero when value-initialized
//   template <int NT> static void add(const Block& x, const int8_t* a, int64_t lda, Acc* acc);
//                    adds to acc[t] the code products of x with token t's activations of the
//                    block, at a + t*lda: the rows of Q for TQ2_0, tq1_permute's layout for TQ1_0
//   static int32_t sum(const Acc& acc);   the total of an accumulator
//   static float half(uint16_t h);        fp16 to float32 (exact)

// K of a TQ matrix must stay below this: each ISA's block kernel says why its int32 lanes hold
// K / 256 blocks of code products up to there.
constexpr int64_t kTqMaxK = int64_t(1) << 21;

// qgemm_fn of Kern's block type.
template <typename Kern>
void act_gemm(const uint8_t* W, int64_t K, const ActBlocks& A, float* Y, int64_t ldy, int64_t m0,
              int64_t m1) {
    using Block = typename Kern::Block;
    constexpr int64_t bs = std::is_same<Block, block_q6_K>::value ? QK_K : QK8_0;
    BITNET_ASSERT(A.k == K && A.bs == bs);
    const int64_t nb = K / bs;
    // a token's activations: K int8 values, and for Q6_K the int16 sums of each 16 of them
    const int64_t act_row_bytes = bs == QK_K ? K + K / 8 : K;
    tiled_gemm<float>(
        A.n, m0, m1, act_row_bytes, [&](int64_t m) { return (const Block*)W + m * nb; },
        [&](auto nt, const Block* row, int64_t n, float* res) {
            Kern::template dot<decltype(nt)::value>(row, nb, A, n, res);
        },
        Y, ldy);
}

// tq_gemm_i32_fn (Out = int32_t) or tq_gemm_f32_fn (Out = float) of Kern's block type.
template <typename Kern, typename Out>
void tq_gemm(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N, Out* out,
             int64_t ldo, int64_t m0, int64_t m1) {
    using Block = typename Kern::Block;
    using Acc = typename Kern::Acc;
    constexpr bool permuted = std::is_same<Block, block_tq1_0>::value;
    constexpr bool f32 = std::is_same<Out, float>::value;
    constexpr int64_t block_stride = permuted ? kTq1PermBlock : QK_K;
    BITNET_ASSERT(K % QK_K == 0 && K < kTqMaxK);
    const int64_t nb = K / QK_K;
    // TQ1_0 reads its chunk's permuted copy, TQ2_0 reads Q in place
    const int64_t act_row_bytes = permuted ? nb * kTq1PermBlock : K;
    const int64_t lda = permuted ? act_row_bytes : ldq;
    const int64_t chunk = token_chunk(act_row_bytes);
    int8_t* perm = permuted ? quant_scratch_i8((size_t)(chunk * act_row_bytes)) : nullptr;
    int32_t* bsum = f32 ? quant_scratch_i32((size_t)(chunk * nb)) : nullptr;
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t n1 = std::min(N, n0 + chunk);
        if constexpr (permuted) tq1_permute(Q, ldq, K, n0, n1, perm);
        if constexpr (f32) tq_block_sums(Q, ldq, K, n0, n1, bsum);
        const int8_t* act = permuted ? perm : Q + n0 * ldq;
        // one chunk: n counts the chunk's tokens from 0
        tiled_gemm<Out>(
            n1 - n0, m0, m1, act_row_bytes, [&](int64_t m) { return (const Block*)W + m * nb; },
            [&](auto nt, const Block* row, int64_t n, Out* res) {
                constexpr int NT = decltype(nt)::value;
                const int8_t* a = act + n * lda;
                if constexpr (f32) {
                    float facc[NT] = {};
                    for (int64_t b = 0; b < nb; ++b) {
                        Acc acc[NT] = {};
                        Kern::template add<NT>(row[b], a + b * block_stride, lda, acc);
                        const float d = Kern::half(row[b].d);
                        for (int t = 0; t < NT; ++t) {
                            const int32_t isum = Kern::sum(acc[t]) - bsum[(n + t) * nb + b];
                            const float term = d * (float)isum;  // rounded alone, as in the reference
                            facc[t] += term;
                        }
                    }
                    for (int t = 0; t < NT; ++t) res[t] = facc[t];
                } else {
                    Acc acc[NT] = {};
                    for (int64_t b = 0; b < nb; ++b) Kern::template add<NT>(row[b], a + b * block_stride, lda, acc);
                    for (int t = 0; t < NT; ++t) res[t] = Kern::sum(acc[t]);
                }
            },
            out + n0 * ldo, ldo);
    }
}

// The QuantKernelSet of an ISA named isa, from its block kernels.
template <typename Q8_0, typename Q4_0, typename Q6_K, typename TQ1_0, typename TQ2_0>
constexpr QuantKernelSet quant_kernel_set(const char* isa) {
    return {isa,
            act_gemm<Q8_0>,
            act_gemm<Q4_0>,
            act_gemm<Q6_K>,
            tq_gemm<TQ1_0, int32_t>,
            tq_gemm<TQ2_0, int32_t>,
            tq_gemm<TQ1_0, float>,
            tq_gemm<TQ2_0, float>};
}

}  // namespace
}  // namespace bitnet
