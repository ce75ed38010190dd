// Scalar reference of the TL1/TL2 lookup-table matmuls (the oracle of the SIMD variants), the
// per-token table builders every variant shares, and the choice of the TL kernel set.
//
// The reference decodes the documented layout of kernels/tl.h literally (nibble by nibble, sign
// bit by sign bit) and sums table entries in int32, so it checks the layout and the tables, not
// only the arithmetic.
#include "kernels/isa_select.h"
#include "kernels/tl.h"

#include <cstring>
#include <string>

#include "kernels/kernels.h"
#include "util/common.h"

namespace bitnet {

#if defined(BITNET_HAVE_X86)
const TLKernelSet& tl_kernels_avx2();        // x86/tl_avx2.cpp
const TLKernelSet& tl_kernels_avx512vnni();  // x86/tl_avx512.cpp
#endif
#if defined(BITNET_HAVE_ARM)
const TLKernelSet& tl_kernels_neon();  // arm/tl_neon.cpp (also under neon-dotprod: no use for SDOT)
#endif

namespace {

// Stores the int16 entries e[0..16) of one group's table as 16 low bytes then 16 high bytes.
// (Split in a local buffer and copied at once: the compiler then vectorizes the split instead of
// storing 32 single bytes that may alias the activations.)
void store_table(const int16_t* e, int8_t* dst) {
    uint8_t bytes[32];
    for (int i = 0; i < 16; ++i) {
        const uint16_t u = (uint16_t)e[i];
        bytes[i] = (uint8_t)(u & 0xff);
        bytes[16 + i] = (uint8_t)(u >> 8);
    }
    std::memcpy(dst, bytes, sizeof bytes);
}

int16_t load_entry(const int8_t* table, int i) {
    return (int16_t)(uint16_t)((uint8_t)table[i] | ((uint16_t)(uint8_t)table[16 + i] << 8));
}

// The ternary digits each table index stands for (0 past the used entries).
constexpr TLDigits pair_digits() {
    TLDigits t{};
    for (int i = 0; i < 9; ++i) {
        t.d[0][i] = (int16_t)(i / 3 - 1);
        t.d[1][i] = (int16_t)(i % 3 - 1);
    }
    return t;
}

constexpr TLDigits triple_digits() {
    TLDigits t{};
    for (int i = 0; i < 14; ++i) {
        // balanced-ternary digits of i = 9*d0 + 3*d1 + d2, each in {-1, 0, 1}
        const int d2 = (i + 1) % 3 - 1, r = (i - d2) / 3;
        const int d1 = (r + 1) % 3 - 1;
        t.d[0][i] = (int16_t)((r - d1) / 3);
        t.d[1][i] = (int16_t)d1;
        t.d[2][i] = (int16_t)d2;
    }
    return t;
}

constexpr TLDigits kPair = pair_digits();
constexpr TLDigits kTriple = triple_digits();

void pair_table(int8_t a0, int8_t a1, int8_t* dst) {
    int16_t e[16];
    for (int i = 0; i < 16; ++i) e[i] = (int16_t)(kPair.d[0][i] * a0 + kPair.d[1][i] * a1);
    store_table(e, dst);
}

void triple_table(int8_t a0, int8_t a1, int8_t a2, int8_t* dst) {
    int16_t e[16];
    for (int i = 0; i < 16; ++i)
        e[i] = (int16_t)(kTriple.d[0][i] * a0 + kTriple.d[1][i] * a1 + kTriple.d[2][i] * a2);
    store_table(e, dst);
}

// Σ over the 64 rows of one row block of pair tables: adds to acc[64].
void sum_pairs_ref(const uint8_t* w, const int8_t* lut, int64_t n_pairs, int32_t* acc) {
    for (int64_t g = 0; g < n_pairs; ++g, w += 32, lut += TL_LUT_BYTES)
        for (int j = 0; j < 32; ++j) {
            acc[j] += load_entry(lut, w[j] & 0x0f);
            acc[j + 32] += load_entry(lut, w[j] >> 4);
        }
}

void tl1_gemm_ref(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                  int32_t* out, int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(m0 % TL_BM == 0 && m1 % TL_BM == 0 && K % 2 == 0);
    const int64_t groups = tl1_groups(K);
    std::vector<int8_t> lut((size_t)(N * groups * TL_LUT_BYTES));
    tl1_build_luts(Q, ldq, N, K, lut.data());
    for (int64_t m = m0; m < m1; m += TL_BM) {
        const uint8_t* w = W + m / TL_BM * tl1_block_bytes(K);
        for (int64_t n = 0; n < N; ++n) {
            int32_t acc[TL_BM] = {};
            sum_pairs_ref(w, lut.data() + n * groups * TL_LUT_BYTES, groups, acc);
            std::memcpy(out + n * ldo + m, acc, sizeof acc);
        }
    }
}

void tl2_gemm_ref(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                  int32_t* out, int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(m0 % TL_BM == 0 && m1 % TL_BM == 0 && K >= 2);
    const int64_t groups = tl2_groups(K), triples = tl2_k3(K) / 3;
    std::vector<int8_t> lut((size_t)(N * groups * TL_LUT_BYTES));
    tl2_build_luts(Q, ldq, N, K, lut.data());
    for (int64_t m = m0; m < m1; m += TL_BM) {
        const uint8_t* block = W + m / TL_BM * tl2_block_bytes(K);
        for (int64_t n = 0; n < N; ++n) {
            const int8_t* lt = lut.data() + n * groups * TL_LUT_BYTES;
            int32_t acc[TL_BM] = {};
            for (int64_t t = 0; t < triples; ++t, lt += TL_LUT_BYTES) {
                const uint8_t* mags = block + tl2_mag_offset(t);
                int32_t v[TL_BM];
                for (int j = 0; j < 32; ++j) {
                    v[j] = load_entry(lt, mags[j] & 0x0f);
                    v[j + 32] = load_entry(lt, mags[j] >> 4);
                }
                for (int s = 0; s < 4; ++s) {
                    const uint8_t* sw = block + tl2_sign_offset(t, s, triples);
                    const uint16_t word = (uint16_t)(sw[0] | (sw[1] << 8));
                    for (int l = 0; l < 16; ++l)
                        if (word >> l & 1) v[tl2_sign_row(s, l)] = -v[tl2_sign_row(s, l)];
                }
                for (int r = 0; r < TL_BM; ++r) acc[r] += v[r];
            }
            const uint8_t* w = block + triples * 40;
            sum_pairs_ref(w, lt, groups - triples, acc);
            std::memcpy(out + n * ldo + m, acc, sizeof acc);
        }
    }
}

}  // namespace

const TLDigits& tl_pair_digits() { return kPair; }
const TLDigits& tl_triple_digits() { return kTriple; }

int64_t tl1_groups(int64_t K) { return K / 2; }
int64_t tl2_groups(int64_t K) { return tl2_k3(K) / 3 + (K - tl2_k3(K)) / 2; }

void tl1_build_luts(const int8_t* Q, int64_t ldq, int64_t N, int64_t K, int8_t* lut) {
    for (int64_t n = 0; n < N; ++n) {
        const int8_t* q = Q + n * ldq;
        for (int64_t g = 0; g < K / 2; ++g, lut += TL_LUT_BYTES) pair_table(q[2 * g], q[2 * g + 1], lut);
    }
}

void tl2_build_luts(const int8_t* Q, int64_t ldq, int64_t N, int64_t K, int8_t* lut) {
    const int64_t k3 = tl2_k3(K);
    for (int64_t n = 0; n < N; ++n) {
        const int8_t* q = Q + n * ldq;
        for (int64_t k = 0; k < k3; k += 3, lut += TL_LUT_BYTES) triple_table(q[k], q[k + 1], q[k + 2], lut);
        for (int64_t k = k3; k < K; k += 2, lut += TL_LUT_BYTES) pair_table(q[k], q[k + 1], lut);
    }
}

const TLKernelSet& tl_kernels_ref() {
    static const TLKernelSet set = {"scalar", tl1_gemm_ref, tl2_gemm_ref, nullptr, 0};
    return set;
}

tl_gemm_fn tl_gemm_for(const TLKernelSet& ts, uint32_t type, int64_t M, int64_t K) {
    for (size_t i = 0; i < ts.n_shapes; ++i)
        if (ts.shapes[i].type == type && ts.shapes[i].M == M && ts.shapes[i].K == K) return ts.shapes[i].gemm;
    return type == TYPE_TL1 ? ts.tl1_gemm : ts.tl2_gemm;
}

std::vector<const TLKernelSet*> tl_kernels_available() {
    std::vector<const TLKernelSet*> all = {&tl_kernels_ref()};
#if defined(BITNET_HAVE_X86)
    all.push_back(&tl_kernels_avx2());
    all.push_back(&tl_kernels_avx512vnni());
#endif
#if defined(BITNET_HAVE_ARM)
    all.push_back(&tl_kernels_neon());
#endif
    return isa_sets_available(all);
}

const TLKernelSet& tl_kernels() {
    static const TLKernelSet& chosen = isa_set_chosen(tl_kernels_available(), tl_kernels_ref());
    return chosen;
}

}  // namespace bitnet
