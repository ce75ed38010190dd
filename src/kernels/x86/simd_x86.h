// SIMD helpers shared by the ISA files of src/kernels/x86: the <immintrin.h> include and small
// AVX2-level helpers (every file there is compiled with at least -mavx2 -mfma -mf16c).
//
// Everything has internal linkage on purpose: each ISA file compiles its own private copy with its
// own -m flags. An inline function with external linkage would be emitted by every such file and
// the linker would keep one copy for all callers, possibly the AVX-512 build of it, which crashes
// on a CPU without AVX-512. On a non-x86 target the header is empty.
#pragma once

#if defined(__x86_64__) || defined(__i386__)

#include <cstdint>

// GCC 12 reports its own _mm512_undefined_* placeholders (used by cvtph_ps, the reduce_* helpers,
// ...) as uninitialized once inlined in an AVX-512 build; the warning is located in the header, so
// silencing it around the include covers those false positives and nothing in the ISA files.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace bitnet {
namespace {

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Software prefetch for the loops that stream a weight matrix once per token (GEMV). The hardware
// prefetcher stops at every 4 KB page of the mapped file, and the out-of-order window of a loop
// with many instructions per weight byte (the TL lookups) reaches far less than a page ahead, so
// each page would start with a full DRAM miss. Asking for the line two pages ahead keeps the memory
// busy. 2B4T shapes, tg t/s on 1 | 2 threads (AMD EPYC Zen 4): none: TL2 20 ms/token in the FFN
// alone; 4 KB: I2_S 37.6 | 50.3, TL2 36.0 | 56.1; 8 KB: I2_S 40.4 | 51.9, TL2 41.0 | 58.0; 12 and
// 16 KB no better. A prefetch past the end of a mapping is ignored, never a fault.
constexpr int64_t kStreamPrefetch = 8192;
// (The address is computed as an integer: it may lie past the end of the object.)
inline void prefetch_stream(const void* p) {
    _mm_prefetch((const char*)((uintptr_t)p + kStreamPrefetch), _MM_HINT_T0);
}
// The same for every cache line of a quant block (a Q6_K block spans up to 5 lines).
template <typename Block>
inline void prefetch_stream_block(const Block* b) {
    for (size_t o = 0; o < sizeof(Block); o += 64) prefetch_stream((const char*)b + o);
}

inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// Transposes the 8x8 block of floats held in r[0..8) (row j in r[j]) in registers. Its own target
// attribute lets ops.cpp, built without ISA flags, use it in its AVX2 attention row too.
__attribute__((target("avx2,fma"))) inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

}  // namespace
}  // namespace bitnet

#endif  // x86
