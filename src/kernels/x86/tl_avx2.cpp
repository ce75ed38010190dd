// AVX2 TL1/TL2 kernels: table lookups with vpshufb, as T-MAC and bitnet.cpp do, but on exact
// int16 tables (see kernels/tl.h): one 32-byte load gives the indexes of 64 rows for one group,
// two shuffles per nibble give the low and high bytes of their entries, and a byte unpack turns
// them into int16 values in the row order the TL2 sign words are stored in.
//
// Loop order per tile of BM rows: groups in int16 blocks of BK, then the tokens, then the 64-row
// blocks of the tile, so a token's tables for BK groups are reused from L1 by every block of the
// tile and a prompt batch streams past the same few KB of weights. The int16 sums of a block are
// widened into int32 partial sums kept in `out`. BM and BK are template parameters: the generic
// kernels use 64 and TL_GROUPS_PER_BLOCK, the generated header instantiates others per shape.
#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/tl.h"
#include "kernels/x86/simd_x86.h"

namespace bitnet {

namespace {

#include "kernels/x86/tl_x86_lookup.inc"

constexpr bool kPlainTables = false;  // tables in kernels/tl.h's layout, for the byte shuffles

// Negates the entries whose TL2 sign bit is set: sign word s masks e[s] lane by lane. `signs`
// holds the words of a unit (kStride 4: word s of the unit's triple kParity at byte 4s + 2kParity)
// or of a lone last triple (kStride 2, kParity 0: word s at byte 2s).
template <int kStride, int kParity>
inline void apply_signs(const uint8_t* signs, __m256i e[4]) {
    __m128i raw;
    if (kStride == 4) {
        raw = _mm_loadu_si128((const __m128i*)signs);
    } else {
        int64_t bits;
        std::memcpy(&bits, signs, sizeof bits);
        raw = _mm_cvtsi64_si128(bits);
    }
    const __m256i all = _mm256_broadcastsi128_si256(raw);
    // lane l of e[s] is bit l of word s: its low byte (l < 8) or high byte (l >= 8), bit l % 8
    const __m256i bit = _mm256_setr_epi16(0x0101, 0x0202, 0x0404, 0x0808, 0x1010, 0x2020, 0x4040,
                                          (short)0x8080, 0x0101, 0x0202, 0x0404, 0x0808, 0x1010,
                                          0x2020, 0x4040, (short)0x8080);
    for (int s = 0; s < 4; ++s) {
        const char lo = (char)(kStride * s + 2 * kParity);
        const __m256i pick = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi8(lo)),
                                                     _mm_set1_epi8((char)(lo + 1)), 1);
        const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(all, pick), bit);
        const __m256i neg = _mm256_cmpeq_epi16(b, bit);
        e[s] = _mm256_sub_epi16(_mm256_xor_si256(e[s], neg), neg);
    }
}

// Σ over `count` <= TL_GROUPS_PER_BLOCK groups of weights w and tables lut, added to acc[64]:
// pairs (32 bytes each), or TL2 triples starting at a unit (80 bytes for two, 40 for a lone last).
template <bool kTriple>
inline void block_sum(const uint8_t* w, const int8_t* lut, int64_t count, int32_t* acc, bool stream) {
    __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                    _mm256_setzero_si256()};
    auto add = [&](const __m256i e[4]) {
        for (int i = 0; i < 4; ++i) a[i] = _mm256_add_epi16(a[i], e[i]);
    };
    __m256i e[4];
    int64_t g = 0;
    if (kTriple) {
        for (; g + 2 <= count; g += 2, w += 80, lut += 2 * TL_LUT_BYTES) {
            if (stream) prefetch_stream(w);
            lookup(w, lut, e);
            apply_signs<4, 0>(w + 64, e);
            add(e);
            lookup(w + 32, lut + TL_LUT_BYTES, e);
            apply_signs<4, 1>(w + 64, e);
            add(e);
        }
        if (g < count) {
            lookup(w, lut, e);
            apply_signs<2, 0>(w + 32, e);
            add(e);
        }
    } else {
        for (; g < count; ++g, w += 32, lut += TL_LUT_BYTES) {
            if (stream) prefetch_stream(w);
            lookup(w, lut, e);
            add(e);
        }
    }
    widen_add(a, acc);
}

// Prompt batches stay on the lookups: AVX2 has no VPDPBUSD to make decoding worth it.
template <bool kTL2>
bool batch_gemm(const uint8_t*, int64_t, const int8_t*, int64_t, int64_t, int32_t*, int64_t, int64_t, int64_t) {
    return false;
}

#include "kernels/x86/tl_x86.inc"

}  // namespace

const TLKernelSet& tl_kernels_avx2() {
    static const TLKernelSet set = tl_kernel_set("avx2");
    return set;
}

}  // namespace bitnet
