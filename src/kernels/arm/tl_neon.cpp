// NEON TL1/TL2 kernels for aarch64: the table lookups of kernels/tl.h with TBL (vqtbl1q_u8) on
// the exact int16 tables, as the AVX2 kernel does with vpshufb. A group's 32 index bytes are two
// 16-byte halves; byte j of half h holds rows 16h + j (low nibble) and 32 + 16h + j (high nibble),
// so two lookups per nibble (low and high table bytes) and a byte zip give the int16 entries of
// 64 rows in natural order, 8 rows per vector. TL2 sign words then negate rows lane by lane.
//
// Loop nest (kernels/tl_loops.inc, shared with x86): rows in tiles of kBM (whole 64-row blocks),
// groups in int16 blocks of kBK (at most TL1_MAX_BK / TL2_MAX_BK, so no overflow), then the
// tokens, then the blocks of the tile, so a token's tables for kBK groups are reused from L1 by every block of the tile. The
// int16 block sums are widened into int32 partial sums kept in `out`. The generic kernels use
// kBM = TL_BM, kBK = TL_GROUPS_PER_BLOCK; include/bitnet-lut-kernels.h instantiates others per shape.
//
// One set, "neon", for both NEON ISAs: the kernels look tables up and have no dot product for SDOT
// to speed up, and when kernels() picks "neon-dotprod", tl_kernels() takes the best TL set at or
// below it (isa_select.h). Everything is Armv8.0 Advanced SIMD, safe on every aarch64 CPU. On
// other targets the file is empty.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/tl.h"

// The byte zips below build int16 lanes as low byte first.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the NEON TL kernels assume little-endian aarch64");

namespace bitnet {

namespace {

// ---- tables -----------------------------------------------------------------------------------

// The 16 int16 entries of one group's table (e0: entries 0-7, e1: 8-15) stored as the layout
// wants: their 16 low bytes, then their 16 high bytes.
inline void store_table(int16x8_t e0, int16x8_t e1, int8_t* dst) {
    const uint8x16_t b0 = vreinterpretq_u8_s16(e0), b1 = vreinterpretq_u8_s16(e1);
    vst1q_u8((uint8_t*)dst, vuzp1q_u8(b0, b1));
    vst1q_u8((uint8_t*)dst + 16, vuzp2q_u8(b0, b1));
}

// tl1_build_luts / tl2_build_luts of kernels/tl.h with 8-lane multiply-adds of the digits
// (int16 is exact: |entry| <= 384).
template <bool kTL2>
void build_luts(const int8_t* Q, int64_t ldq, int64_t N, int64_t K, int8_t* lut) {
    const TLDigits& p = tl_pair_digits();
    const TLDigits& t = tl_triple_digits();
    const int16x8_t p0a = vld1q_s16(p.d[0]), p0b = vld1q_s16(p.d[0] + 8);
    const int16x8_t p1a = vld1q_s16(p.d[1]), p1b = vld1q_s16(p.d[1] + 8);
    const int16x8_t t0a = vld1q_s16(t.d[0]), t0b = vld1q_s16(t.d[0] + 8);
    const int16x8_t t1a = vld1q_s16(t.d[1]), t1b = vld1q_s16(t.d[1] + 8);
    const int16x8_t t2a = vld1q_s16(t.d[2]), t2b = vld1q_s16(t.d[2] + 8);
    const int64_t k3 = kTL2 ? tl2_k3(K) : 0;
    for (int64_t n = 0; n < N; ++n) {
        const int8_t* q = Q + n * ldq;
        for (int64_t k = 0; k < k3; k += 3, lut += TL_LUT_BYTES) {
            const int16_t a0 = q[k], a1 = q[k + 1], a2 = q[k + 2];
            store_table(vmlaq_n_s16(vmlaq_n_s16(vmulq_n_s16(t0a, a0), t1a, a1), t2a, a2),
                        vmlaq_n_s16(vmlaq_n_s16(vmulq_n_s16(t0b, a0), t1b, a1), t2b, a2), lut);
        }
        for (int64_t k = k3; k < K; k += 2, lut += TL_LUT_BYTES) {
            const int16_t a0 = q[k], a1 = q[k + 1];
            store_table(vmlaq_n_s16(vmulq_n_s16(p0a, a0), p1a, a1), vmlaq_n_s16(vmulq_n_s16(p0b, a0), p1b, a1),
                        lut);
        }
    }
}

// ---- block sums -------------------------------------------------------------------------------

// Looks up one group's table for the 64 rows of a block and hands each vector of 8 entries to
// add(Row<k>(), e): e holds rows 8k..8k+7. Half h of the 32 index bytes (rows 16h + j in the low
// nibbles, 32 + 16h + j in the high) gives the vectors k = 2h, 2h+1, 4+2h, 5+2h. The row index is
// a type so that the callers can derive immediates from it (the lane of a sign word).
template <int kK>
using Row = std::integral_constant<int, kK>;

template <int kH, typename Add>
inline void lookup_half(const uint8_t* w, uint8x16_t lo, uint8x16_t hi, Add& add) {
    const uint8x16_t v = vld1q_u8(w + 16 * kH);
    const uint8x16_t i0 = vandq_u8(v, vdupq_n_u8(0x0f)), i1 = vshrq_n_u8(v, 4);
    const uint8x16_t l0 = vqtbl1q_u8(lo, i0), h0 = vqtbl1q_u8(hi, i0);
    add(Row<2 * kH>(), vreinterpretq_s16_u8(vzip1q_u8(l0, h0)));
    add(Row<2 * kH + 1>(), vreinterpretq_s16_u8(vzip2q_u8(l0, h0)));
    const uint8x16_t l1 = vqtbl1q_u8(lo, i1), h1 = vqtbl1q_u8(hi, i1);
    add(Row<4 + 2 * kH>(), vreinterpretq_s16_u8(vzip1q_u8(l1, h1)));
    add(Row<5 + 2 * kH>(), vreinterpretq_s16_u8(vzip2q_u8(l1, h1)));
}

template <typename Add>
inline void lookup(const uint8_t* w, const int8_t* lut, Add add) {
    const uint8x16_t lo = vld1q_u8((const uint8_t*)lut), hi = vld1q_u8((const uint8_t*)lut + 16);
    lookup_half<0>(w, lo, hi, add);
    lookup_half<1>(w, lo, hi, add);
}

// Adds one TL2 triple's entries to a (rows 8k..8k+7 in a[k]), negated where their sign bit is set:
// sign word s is lane kLane0 + s * kStep of `words` (a unit's words interleave those of its two
// triples). Rows 8k..8k+7 are bits 8h..8h+7 of word s (tl2_sign_row): s = 2(k/4) + k%2, h = k/2%2.
// With neg = 0 or -1 per lane, (e ^ neg) - neg is e or -e.
template <int kLane0, int kStep>
inline void add_triple(const uint8_t* w, const int8_t* lut, uint16x8_t words, const uint16x8_t bits[2],
                       int16x8_t a[8]) {
    lookup(w, lut, [&](auto row, int16x8_t e) {
        constexpr int k = decltype(row)::value, s = 2 * (k / 4) + k % 2, h = k / 2 % 2;
        const uint16x8_t word = vdupq_laneq_u16(words, kLane0 + s * kStep);
        const int16x8_t neg = vreinterpretq_s16_u16(vtstq_u16(word, bits[h]));
        a[k] = vaddq_s16(a[k], vsubq_s16(veorq_s16(e, neg), neg));
    });
}

// Adds the int16 block sums a (rows 8k..8k+7 in a[k]) to the int32 sums of rows 0..63 at acc.
inline void widen_add(const int16x8_t a[8], int32_t* acc) {
    for (int k = 0; k < 8; ++k) {
        int32_t* dst = acc + 8 * k;
        vst1q_s32(dst, vaddw_s16(vld1q_s32(dst), vget_low_s16(a[k])));
        vst1q_s32(dst + 4, vaddw_high_s16(vld1q_s32(dst + 4), a[k]));
    }
}

// Σ over `count` groups (at most the int16 block) of weights w and tables lut, added to acc[64]:
// pairs (32 bytes each), or TL2 triples starting at a unit (80 bytes for two, 40 for a lone last).
template <bool kTriple>
inline void block_sum(const uint8_t* w, const int8_t* lut, int64_t count, int32_t* acc, bool /*stream*/) {
    int16x8_t a[8];
    for (int k = 0; k < 8; ++k) a[k] = vdupq_n_s16(0);
    int64_t g = 0;
    if (kTriple) {
        // lane l tests bit l (bits[0]) or bit 8 + l (bits[1]) of a sign word
        static const uint16_t kBits[16] = {1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,
                                           1u << 6,  1u << 7,  1u << 8,  1u << 9,  1u << 10, 1u << 11,
                                           1u << 12, 1u << 13, 1u << 14, 1u << 15};
        const uint16x8_t bits[2] = {vld1q_u16(kBits), vld1q_u16(kBits + 8)};
        for (; g + 2 <= count; g += 2, w += 80, lut += 2 * TL_LUT_BYTES) {
            const uint16x8_t words = vreinterpretq_u16_u8(vld1q_u8(w + 64));  // word s of triple p: lane 2s + p
            add_triple<0, 2>(w, lut, words, bits, a);
            add_triple<1, 2>(w + 32, lut + TL_LUT_BYTES, words, bits, a);
        }
        if (g < count) {  // a lone last triple has 8 bytes of sign words, then other groups' bytes
            const uint16x8_t words = vcombine_u16(vreinterpret_u16_u8(vld1_u8(w + 32)), vdup_n_u16(0));
            add_triple<0, 1>(w, lut, words, bits, a);
        }
    } else {
        for (; g < count; ++g, w += 32, lut += TL_LUT_BYTES)
            lookup(w, lut, [&](auto row, int16x8_t e) { a[row] = vaddq_s16(a[row], e); });
    }
    widen_add(a, acc);
}

// Prompt batches use the lookups too: NEON has no instruction that makes decoding pay off here.
template <bool kTL2>
bool batch_gemm(const uint8_t*, int64_t, const int8_t*, int64_t, int64_t, int32_t*, int64_t, int64_t, int64_t) {
    return false;
}

#include "kernels/tl_loops.inc"

}  // namespace

const TLKernelSet& tl_kernels_neon() {
    static const TLKernelSet set = tl_kernel_set("neon");
    return set;
}

}  // namespace bitnet

#endif  // __aarch64__
