// AVX-512 TL1/TL2 kernels. One token: two groups per 512-bit step (a TL2 unit or two pairs),
// entries looked up as whole words with VPERMW in tables of int16 entries, TL2 signs applied with
// the unit's interleaved sign words as 32-lane masks. Prompt batches: the VPDPBUSD path below
// (batch_gemm).
#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/tl.h"
#include "kernels/x86/simd_x86.h"

namespace bitnet {

namespace {

#include "kernels/x86/tl_x86_lookup.inc"

// The AVX-512 kernels keep each group's table as 16 whole int16 entries (kPlainTables, read by
// tl_x86.inc's build_luts): VPERMW looks up words directly, where the 256-bit scheme needs two
// byte shuffles and an unpack per vector.
constexpr bool kPlainTables = true;

// The entries of two groups (a TL2 unit, or two pairs) for the 64 rows of a block: v holds their
// 64 index bytes (group g, then g+1), T their two tables (32 words: g's, then g+1's, so the indexes
// of g+1 get bit 4 set). VPERMW reads the low 5 bits of each index word, so the byte unpacks that
// widen the indexes need no zero bytes, and they leave the lanes in lookup()'s row order (per
// group: e[0] rows 0-7 and 16-23, e[1] 8-15 and 24-31, e[2] 32-39 and 48-55, e[3] 40-47 and
// 56-63), the order of the TL2 sign words. From the cache, TL2 32 -> 40 GB/s and TL1 28 -> 47 GB/s
// against pshufb on low/high bytes.
inline void lookup_two(__m512i v, __m512i T, __m512i e[4]) {
    const __m512i nibble = _mm512_set1_epi8(0x0f);
    const __m512i second = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi8(0x10), 1);
    const __m512i i0 = _mm512_ternarylogic_epi32(v, nibble, second, 0xEA);  // (v & 0x0f) | second
    const __m512i i1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), nibble, second, 0xEA);
    e[0] = _mm512_permutexvar_epi16(_mm512_unpacklo_epi8(i0, i0), T);
    e[1] = _mm512_permutexvar_epi16(_mm512_unpackhi_epi8(i0, i0), T);
    e[2] = _mm512_permutexvar_epi16(_mm512_unpacklo_epi8(i1, i1), T);
    e[3] = _mm512_permutexvar_epi16(_mm512_unpackhi_epi8(i1, i1), T);
}

inline uint16_t sign_word(const uint8_t* signs, int s) {
    uint16_t word;
    std::memcpy(&word, signs + 2 * s, sizeof word);
    return word;
}

inline __mmask32 unit_mask(const uint8_t* signs, int s) {
    uint32_t bits;
    std::memcpy(&bits, signs + 4 * s, sizeof bits);
    return (__mmask32)bits;
}

// Σ over `count` groups of weights w and tables lut, added to acc[64]: two groups a step (pairs:
// 64 bytes; TL2 triples from a unit: 80, whose interleaved sign words load as 32-lane masks for a
// masked subtract), a lone last group with its second half looking up zeros. The two halves are
// folded into one 256-bit int16 sum (at most BK <= TL*_MAX_BK entries in all: no overflow) and
// widened into the int32 partial sums as in the AVX2 kernel.
template <bool kTriple>
inline void block_sum(const uint8_t* w, const int8_t* lut, int64_t count, int32_t* acc, bool stream) {
    constexpr int64_t kStep = kTriple ? 80 : 64;
    __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                    _mm512_setzero_si512()};
    __m512i e[4];
    int64_t g = 0;
    for (; g + 2 <= count; g += 2, w += kStep, lut += 2 * TL_LUT_BYTES) {
        if (stream) prefetch_stream(w);
        lookup_two(_mm512_loadu_si512(w), _mm512_loadu_si512(lut), e);
        for (int i = 0; i < 4; ++i)
            a[i] = _mm512_add_epi16(
                a[i], kTriple ? _mm512_mask_sub_epi16(e[i], unit_mask(w + 64, i), _mm512_setzero_si512(), e[i]) : e[i]);
    }
    if (g < count) {  // a lone last triple keeps its four sign words after its magnitudes
        lookup_two(_mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i*)w)),
                   _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i*)lut)), e);
        for (int i = 0; i < 4; ++i)
            a[i] = _mm512_add_epi16(
                a[i], kTriple ? _mm512_mask_sub_epi16(e[i], (__mmask32)sign_word(w + 32, i), _mm512_setzero_si512(), e[i])
                              : e[i]);
    }
    __m256i s[4];
    for (int i = 0; i < 4; ++i)
        s[i] = _mm256_add_epi16(_mm512_castsi512_si256(a[i]), _mm512_extracti64x4_epi64(a[i], 1));
    widen_add(s, acc);
}

// ---- prompt batches: decode to codes once, then VPDPBUSD ---------------------------------------
//
// Table lookups cost a few shuffles per 64 rows x 1 group for every token, while VPDPBUSD does
// 64 multiply-adds in one instruction: once a 64-row block's weights serve several tokens, it is
// cheaper to decode them into unsigned codes t + 1 (as I2_S stores them) and multiply. The decode
// goes through two scratch buffers of the calling thread: V, one 64-byte vector per column k with
// row r in byte r, then D, four vectors per 4 columns whose dword lane L*4 + i of vector c holds
// the codes of row 16L + 4c + i for those 4 columns (the order two rounds of byte/word unpacks
// give), ready to meet a broadcast dword of 4 activations. Σ code·q - Σ q = Σ t·q, exactly.
constexpr int64_t kBatchMinTokens = 4;  // below this, the lookups win (the decode is ~0.1 op/weight)
constexpr int kBatchTile = 4;           // tokens per register tile: 16 accumulators + 4 weights + 1

// Row-order sign mask (bit r = row r negative) of TL2 triple t of a block with n3 triples: the
// words s (tl2_sign_row order) regrouped by bytes, rows 8b..8b+7 from byte b of the result.
inline __mmask64 row_signs(const uint8_t* blk, int64_t t, int64_t n3) {
    const uint8_t* w0 = blk + tl2_sign_offset(t, 0, n3);
    const int step = t / 2 < n3 / 2 ? 4 : 2;  // words interleaved in a unit; a lone triple's in a row
    uint8_t b[8];
    // word s low byte: rows 32(s/2) + 8(s%2) ..+7, high byte: the same + 16
    for (int s = 0; s < 4; ++s) {
        const int base = 4 * (s / 2) + (s % 2);
        b[base] = w0[step * s];
        b[base + 2] = w0[step * s + 1];
    }
    uint64_t bits;
    std::memcpy(&bits, b, sizeof bits);
    return (__mmask64)bits;
}

// The 64 magnitude/index nibbles of a group as one vector, row r in byte r.
inline __m512i group_nibbles(const uint8_t* p) {
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    const __m256i v = _mm256_loadu_si256((const __m256i*)p);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, nibble)),
                              _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble), 1);
}

inline __m512i digit_codes(const TLDigits& d, int j) {  // per index: digit j + 1, in every lane
    alignas(16) int8_t c[16];
    for (int i = 0; i < 16; ++i) c[i] = (int8_t)(d.d[j][i] + 1);
    return _mm512_broadcast_i32x4(_mm_load_si128((const __m128i*)c));
}

// The code tables of decode_block, built once per call: pair digits 0-1, triple digits 0-2.
struct CodeTables {
    __m512i pair[2], triple[3];
    CodeTables()
        : pair{digit_codes(tl_pair_digits(), 0), digit_codes(tl_pair_digits(), 1)},
          triple{digit_codes(tl_triple_digits(), 0), digit_codes(tl_triple_digits(), 1),
                 digit_codes(tl_triple_digits(), 2)} {}
};

// The codes of the 64-row block at blk (rows of K values) into D (Kp / 4 * 256 bytes, Kp = K
// rounded up to 4; columns past K get code 0), through V (Kp * 64 bytes).
template <bool kTL2>
void decode_block(const CodeTables& ct, const uint8_t* blk, int64_t K, uint8_t* V, uint8_t* D) {
    const int64_t kp = (K + 3) / 4 * 4;
    const __m512i p0 = ct.pair[0], p1 = ct.pair[1];
    int64_t k = 0;
    const uint8_t* pairs = blk;
    if (kTL2) {
        const __m512i t0 = ct.triple[0], t1 = ct.triple[1], t2 = ct.triple[2], two = _mm512_set1_epi8(2);
        const int64_t n3 = tl2_k3(K) / 3;
        for (int64_t t = 0; t < n3; ++t, k += 3) {
            const __m512i m = group_nibbles(blk + tl2_mag_offset(t));
            const __mmask64 neg = row_signs(blk, t, n3);  // a negative digit's code is 2 - code
            const __m512i c0 = _mm512_shuffle_epi8(t0, m), c1 = _mm512_shuffle_epi8(t1, m);
            const __m512i c2 = _mm512_shuffle_epi8(t2, m);
            _mm512_storeu_si512(V + k * 64, _mm512_mask_sub_epi8(c0, neg, two, c0));
            _mm512_storeu_si512(V + (k + 1) * 64, _mm512_mask_sub_epi8(c1, neg, two, c1));
            _mm512_storeu_si512(V + (k + 2) * 64, _mm512_mask_sub_epi8(c2, neg, two, c2));
        }
        pairs = blk + n3 * 40;
    }
    for (; k < K; k += 2, pairs += 32) {
        const __m512i m = group_nibbles(pairs);
        _mm512_storeu_si512(V + k * 64, _mm512_shuffle_epi8(p0, m));
        _mm512_storeu_si512(V + (k + 1) * 64, _mm512_shuffle_epi8(p1, m));
    }
    std::memset(V + K * 64, 0, (size_t)(kp - K) * 64);
    for (int64_t k4 = 0; k4 < kp / 4; ++k4) {
        const uint8_t* v = V + k4 * 256;
        const __m512i v0 = _mm512_loadu_si512(v), v1 = _mm512_loadu_si512(v + 64);
        const __m512i v2 = _mm512_loadu_si512(v + 128), v3 = _mm512_loadu_si512(v + 192);
        const __m512i a_lo = _mm512_unpacklo_epi8(v0, v1), a_hi = _mm512_unpackhi_epi8(v0, v1);
        const __m512i b_lo = _mm512_unpacklo_epi8(v2, v3), b_hi = _mm512_unpackhi_epi8(v2, v3);
        uint8_t* d = D + k4 * 256;
        _mm512_storeu_si512(d, _mm512_unpacklo_epi16(a_lo, b_lo));
        _mm512_storeu_si512(d + 64, _mm512_unpackhi_epi16(a_lo, b_lo));
        _mm512_storeu_si512(d + 128, _mm512_unpacklo_epi16(a_hi, b_hi));
        _mm512_storeu_si512(d + 192, _mm512_unpackhi_epi16(a_hi, b_hi));
    }
}

inline int32_t load4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// out[n][r] = Σ_k code(r, k) q[n][k] - qsum[n] for the NT tokens at q and the 64 rows of D.
template <int NT>
void codes_tile(const uint8_t* D, int64_t K, const int8_t* q, int64_t ldq, const int32_t* qsum, int32_t* out,
                int64_t ldo) {
    __m512i acc[4 * NT];
    for (int i = 0; i < 4 * NT; ++i) acc[i] = _mm512_setzero_si512();
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
        const uint8_t* d = D + k * 64;
        const __m512i w0 = _mm512_loadu_si512(d), w1 = _mm512_loadu_si512(d + 64);
        const __m512i w2 = _mm512_loadu_si512(d + 128), w3 = _mm512_loadu_si512(d + 192);
        for (int t = 0; t < NT; ++t) {
            const __m512i a = _mm512_set1_epi32(load4(q + t * ldq + k));
            acc[4 * t] = _mm512_dpbusd_epi32(acc[4 * t], w0, a);
            acc[4 * t + 1] = _mm512_dpbusd_epi32(acc[4 * t + 1], w1, a);
            acc[4 * t + 2] = _mm512_dpbusd_epi32(acc[4 * t + 2], w2, a);
            acc[4 * t + 3] = _mm512_dpbusd_epi32(acc[4 * t + 3], w3, a);
        }
    }
    if (k < K) {  // the last 1-3 columns: no read past the row (the codes beyond K are 0)
        const uint8_t* d = D + k * 64;
        for (int t = 0; t < NT; ++t) {
            int32_t a4 = 0;
            std::memcpy(&a4, q + t * ldq + k, (size_t)(K - k));
            const __m512i a = _mm512_set1_epi32(a4);
            for (int c = 0; c < 4; ++c)
                acc[4 * t + c] = _mm512_dpbusd_epi32(acc[4 * t + c], _mm512_loadu_si512(d + 64 * c), a);
        }
    }
    for (int t = 0; t < NT; ++t) {
        alignas(64) int32_t r[64];
        for (int c = 0; c < 4; ++c) _mm512_store_si512(r + 16 * c, acc[4 * t + c]);
        int32_t* o = out + t * ldo;
        for (int c = 0; c < 4; ++c)
            for (int L = 0; L < 4; ++L)
                for (int i = 0; i < 4; ++i) o[16 * L + 4 * c + i] = r[16 * c + 4 * L + i] - qsum[t];
    }
}

// The batch path of tl_gemm (tl_x86.inc) for N >= kBatchMinTokens; false (not handled) below.
template <bool kTL2>
bool batch_gemm(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N, int32_t* out,
                int64_t ldo, int64_t m0, int64_t m1) {
    if (N < kBatchMinTokens) return false;
    const int64_t kp = (K + 3) / 4 * 4;
    const int64_t block_bytes = kTL2 ? tl2_block_bytes(K) : tl1_block_bytes(K);
    int32_t* qsum = quant_scratch_i32((size_t)N);
    for (int64_t n = 0; n < N; ++n) {
        int32_t s = 0;
        for (int64_t k = 0; k < K; ++k) s += Q[n * ldq + k];
        qsum[n] = s;
    }
    uint8_t* V = (uint8_t*)quant_scratch_i8((size_t)(2 * kp * 64));
    uint8_t* D = V + kp * 64;
    const CodeTables tables;
    for (int64_t m = m0; m < m1; m += TL_BM) {
        decode_block<kTL2>(tables, W + m / TL_BM * block_bytes, K, V, D);
        int64_t n = 0;
        for (; n + kBatchTile <= N; n += kBatchTile)
            codes_tile<kBatchTile>(D, K, Q + n * ldq, ldq, qsum + n, out + n * ldo + m, ldo);
        switch (N - n) {
            case 3: codes_tile<3>(D, K, Q + n * ldq, ldq, qsum + n, out + n * ldo + m, ldo); break;
            case 2: codes_tile<2>(D, K, Q + n * ldq, ldq, qsum + n, out + n * ldo + m, ldo); break;
            case 1: codes_tile<1>(D, K, Q + n * ldq, ldq, qsum + n, out + n * ldo + m, ldo); break;
            default: break;
        }
    }
    return true;
}

#include "kernels/x86/tl_x86.inc"

}  // namespace

const TLKernelSet& tl_kernels_avx512vnni() {
    static const TLKernelSet set = tl_kernel_set("avx512vnni");
    return set;
}

}  // namespace bitnet
