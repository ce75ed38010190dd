// Tiled-attention kernel tests (kernels/attn.h): every compiled set this CPU supports.
//
//   - chunk partials (m, l, o) against a double-precision evaluation of the same formulas, within
//     a bound derived per element: a score is an FMA chain of head_dim terms, so it is off by at
//     most γ_hd Σ|q_d k_d| (γ_n = n u / (1 - n u), u = 2^-24); e^(s - m) then carries the errors
//     of s and m plus a few ulp of its own, and l and o add γ_n of their sums (Higham §3.1);
//   - the contract that makes batching invisible: a row's partial is bit-identical whether it is
//     computed alone or among other rows, with more keys loaded than it sees, and keys and values
//     it does not see set to NaN;
//   - the AVX-512 set bit-identical with the AVX2 set (a model's logits do not depend on which of
//     the two a CPU runs);
//   - the loaders: bit-identical with the scalar ones; the Q8_0 quantizer of the cache within half
//     a step of its input, NaN stored as 0.
// Exit status 1 and a line per failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/attn.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "util/common.h"

using namespace bitnet;

namespace {

int g_failures = 0;
std::mt19937_64 g_rng(7);

void fail_case(const char* isa, const std::string& what) {
    ++g_failures;
    if (g_failures <= 50) std::printf("FAIL [%s] %s\n", isa, what.c_str());
}

float urand(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }
int irand(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_rng); }

double gamma_n(int n) {
    const double u = std::ldexp(1.0, -24);
    return n * u / (1 - n * u);
}

struct Case {
    int hd, n, R;
    std::vector<int> valid;
    std::vector<float> q, kt, v;  // q (R, hd), kt (hd, ATTN_CHUNK), v (n, hd)
};

Case make_case(int hd, int n, int R, float qscale) {
    Case c{hd, n, R, std::vector<int>(R), std::vector<float>((size_t)R * hd),
           std::vector<float>((size_t)hd * ATTN_CHUNK, NAN), std::vector<float>((size_t)n * hd)};
    for (int r = 0; r < R; ++r) c.valid[r] = irand(1, n);
    for (auto& x : c.q) x = urand(-qscale, qscale);
    for (int d = 0; d < hd; ++d)
        for (int t = 0; t < n; ++t) c.kt[(size_t)d * ATTN_CHUNK + t] = urand(-2, 2);
    for (auto& x : c.v) x = urand(-3, 3);
    return c;
}

void check_against_double(const AttnKernelSet& ks, const Case& c) {
    std::vector<float> m(c.R, NAN), l(c.R, NAN), o((size_t)c.R * c.hd, NAN);
    ks.chunk(c.q.data(), c.R, c.valid.data(), c.n, c.kt.data(), c.v.data(), c.hd, m.data(), l.data(), o.data());
    const std::string shape = strfmt("hd %d n %d R %d", c.hd, c.n, c.R);
    for (int r = 0; r < c.R; ++r) {
        const int nv = c.valid[r];
        std::vector<double> s(nv), es(nv);
        double mx = -INFINITY, emx = 0;
        for (int t = 0; t < nv; ++t) {
            double acc = 0, mag = 0;
            for (int d = 0; d < c.hd; ++d) {
                const double p = (double)c.q[(size_t)r * c.hd + d] * c.kt[(size_t)d * ATTN_CHUNK + t];
                acc += p;
                mag += std::fabs(p);
            }
            s[t] = acc;
            es[t] = gamma_n(c.hd) * mag + 1e-30;
            if (acc > mx) mx = acc, emx = es[t];
        }
        if (std::fabs(m[r] - mx) > emx * 2 + 1e-30) {
            fail_case(ks.isa, shape + strfmt(" row %d: m %.9g, expected %.9g", r, m[r], mx));
            continue;
        }
        // e^(s - m) with |Δ(s - m)| <= es + emx, the kernel's own exp within 4 ulp.
        double L = 0, eL = 0;
        std::vector<double> p(nv), ep(nv);
        for (int t = 0; t < nv; ++t) {
            p[t] = std::exp(s[t] - mx);
            ep[t] = p[t] * (std::expm1(es[t] + emx) + 4 * std::ldexp(1.0, -24));
            L += p[t];
            eL += ep[t];
        }
        eL += gamma_n(nv) * (L + eL);
        if (std::fabs(l[r] - L) > 2 * eL) fail_case(ks.isa, shape + strfmt(" row %d: l %.9g, expected %.9g ± %.3g", r, l[r], L, eL));
        for (int d = 0; d < c.hd; ++d) {
            double O = 0, eO = 0, mag = 0;
            for (int t = 0; t < nv; ++t) {
                const double vv = c.v[(size_t)t * c.hd + d];
                O += p[t] * vv;
                eO += ep[t] * std::fabs(vv);
                mag += (p[t] + ep[t]) * std::fabs(vv);
            }
            eO += gamma_n(nv) * mag;
            const float got = o[(size_t)r * c.hd + d];
            if (!(std::fabs(got - O) <= 2 * eO + 1e-30)) {
                fail_case(ks.isa, shape + strfmt(" row %d o[%d]: %.9g, expected %.9g ± %.3g", r, d, got, O, eO));
                break;
            }
        }
    }
}

// Row r of a tile, again alone: with only its visible keys loaded, and with the keys and values it
// does not see replaced by NaN. Every result must be the tile's, bit for bit.
void check_row_independence(const AttnKernelSet& ks, const Case& c) {
    std::vector<float> m(c.R), l(c.R), o((size_t)c.R * c.hd);
    ks.chunk(c.q.data(), c.R, c.valid.data(), c.n, c.kt.data(), c.v.data(), c.hd, m.data(), l.data(), o.data());
    for (int r = 0; r < c.R; ++r) {
        const int nv = c.valid[r];
        std::vector<float> kt = c.kt, v = c.v;
        for (int d = 0; d < c.hd; ++d)
            for (int t = nv; t < ATTN_CHUNK; ++t) kt[(size_t)d * ATTN_CHUNK + t] = NAN;
        for (size_t i = (size_t)nv * c.hd; i < v.size(); ++i) v[i] = NAN;
        for (int n_loaded : {nv, c.n}) {
            float m1, l1;
            std::vector<float> o1(c.hd);
            ks.chunk(c.q.data() + (size_t)r * c.hd, 1, &nv, n_loaded, kt.data(), v.data(), c.hd, &m1, &l1, o1.data());
            if (std::memcmp(&m1, &m[r], 4) || std::memcmp(&l1, &l[r], 4) ||
                std::memcmp(o1.data(), o.data() + (size_t)r * c.hd, c.hd * 4))
                fail_case(ks.isa, strfmt("hd %d n %d R %d row %d (valid %d, %d keys loaded): alone it "
                                         "differs from its tile",
                                         c.hd, c.n, c.R, r, nv, n_loaded));
        }
    }
}

void test_chunks(const std::vector<const AttnKernelSet*>& sets) {
    for (const AttnKernelSet* ks : sets)
        for (int hd : {16, 32, 64, 80, 128, 256})
            for (int rep = 0; rep < 12; ++rep) {
                const int n = rep < 2 ? (rep == 0 ? 1 : ATTN_CHUNK) : irand(1, ATTN_CHUNK);
                const int R = rep < 4 ? 1 + rep * 5 : irand(1, ATTN_ROWS);
                // Scores from about ±1 to about ±40: flat and peaked softmaxes.
                const Case c = make_case(hd, n, R, rep % 3 == 0 ? 0.02f : rep % 3 == 1 ? 0.2f : 1.0f);
                check_against_double(*ks, c);
                check_row_independence(*ks, c);
            }
}

// Every output of the AVX-512 chunk kernel is the AVX2 kernel's, bit for bit (attn_avx512.cpp).
void test_avx512_matches_avx2(const std::vector<const AttnKernelSet*>& sets) {
    const AttnKernelSet *a = nullptr, *b = nullptr;
    for (const AttnKernelSet* ks : sets) {
        if (std::string(ks->isa) == "avx2") a = ks;
        if (std::string(ks->isa) == "avx512vnni") b = ks;
    }
    if (!a || !b) return;
    for (int hd : {16, 32, 48, 64, 80, 128, 256})
        for (int rep = 0; rep < 40; ++rep) {
            const int n = rep < 3 ? (rep == 0 ? 1 : rep == 1 ? 16 : ATTN_CHUNK) : irand(1, ATTN_CHUNK);
            const int R = rep < 6 ? 1 + rep * 3 : irand(1, ATTN_ROWS);
            Case c = make_case(hd, n, R, rep % 3 == 0 ? 0.02f : rep % 3 == 1 ? 0.2f : 1.0f);
            for (int d = 0; d < hd; ++d)  // the loaders' contract: zeros up to the next 16 keys
                for (int t = n; t < ((n + 15) & ~15); ++t) c.kt[(size_t)d * ATTN_CHUNK + t] = 0.0f;
            std::vector<float> m1(R), l1(R), o1((size_t)R * hd), m2(R), l2(R), o2((size_t)R * hd);
            a->chunk(c.q.data(), R, c.valid.data(), n, c.kt.data(), c.v.data(), hd, m1.data(), l1.data(), o1.data());
            b->chunk(c.q.data(), R, c.valid.data(), n, c.kt.data(), c.v.data(), hd, m2.data(), l2.data(), o2.data());
            if (std::memcmp(m1.data(), m2.data(), R * 4) || std::memcmp(l1.data(), l2.data(), R * 4) ||
                std::memcmp(o1.data(), o2.data(), o1.size() * 4))
                fail_case(b->isa, strfmt("hd %d n %d R %d: differs from the AVX2 kernel", hd, n, R));
        }
}

void test_loaders(const std::vector<const AttnKernelSet*>& sets) {
    const AttnKernelSet& ref = attn_kernels_ref();
    for (int hd : {32, 64, 128, 256})
        for (int n : {1, 7, 16, 33, ATTN_CHUNK}) {
            std::vector<float> x((size_t)ATTN_CHUNK * hd);
            for (auto& e : x) e = urand(-5, 5);
            // f16 K blocked: [hd][CHUNK] halves; Q8_0 rows, f16 rows.
            std::vector<uint16_t> kh((size_t)hd * ATTN_CHUNK), vh((size_t)ATTN_CHUNK * hd);
            for (size_t i = 0; i < kh.size(); ++i) kh[i] = fp32_to_fp16(x[i]), vh[i] = fp32_to_fp16(x[i] * 0.5f);
            const size_t qrow = (size_t)hd / 32 * sizeof(block_q8_0);
            std::vector<uint8_t> q8((size_t)ATTN_CHUNK * qrow);
            for (int t = 0; t < ATTN_CHUNK; ++t) kv_quantize_q8_0(x.data() + (size_t)t * hd, hd, q8.data() + t * qrow);
            for (const AttnKernelSet* ks : sets) {
                std::vector<float> a((size_t)hd * ATTN_CHUNK, NAN), b = a;
                auto cmp_k = [&](const char* what) {
                    for (int d = 0; d < hd; ++d)
                        if (std::memcmp(&a[(size_t)d * ATTN_CHUNK], &b[(size_t)d * ATTN_CHUNK], n * 4)) {
                            fail_case(ks->isa, strfmt("%s hd %d n %d differs from the scalar loader", what, hd, n));
                            return;
                        }
                };
                ks->load_k_f16((const uint8_t*)kh.data(), 0, n, hd, a.data());
                ref.load_k_f16((const uint8_t*)kh.data(), 0, n, hd, b.data());
                cmp_k("load_k_f16");
                ks->load_k_q8_0(q8.data(), qrow, n, hd, a.data());
                ref.load_k_q8_0(q8.data(), qrow, n, hd, b.data());
                cmp_k("load_k_q8_0");
                std::vector<float> va((size_t)n * hd, NAN), vb = va;
                ks->load_v_f16((const uint8_t*)vh.data(), hd * 2, n, hd, va.data());
                ref.load_v_f16((const uint8_t*)vh.data(), hd * 2, n, hd, vb.data());
                if (std::memcmp(va.data(), vb.data(), va.size() * 4))
                    fail_case(ks->isa, strfmt("load_v_f16 hd %d n %d differs from the scalar loader", hd, n));
                // and the values are the ones stored
                for (int t = 0; t < n; ++t)
                    for (int d = 0; d < hd; ++d) {
                        const float want = fp16_to_fp32(vh[(size_t)t * hd + d]);
                        if (vb[(size_t)t * hd + d] != want) {
                            fail_case("scalar", "load_v_f16 does not give the stored halves");
                            t = n;
                            break;
                        }
                    }
                ks->load_v_q8_0(q8.data(), qrow, n, hd, va.data());
                ref.load_v_q8_0(q8.data(), qrow, n, hd, vb.data());
                if (std::memcmp(va.data(), vb.data(), va.size() * 4))
                    fail_case(ks->isa, strfmt("load_v_q8_0 hd %d n %d differs from the scalar loader", hd, n));
            }
        }
}

void test_q8_0_quantizer() {
    std::vector<float> x(64);
    for (auto& e : x) e = urand(-7, 7);
    x[3] = NAN;
    x[40] = INFINITY;  // the second block: saturates, d = inf
    std::vector<uint8_t> q(2 * sizeof(block_q8_0));
    kv_quantize_q8_0(x.data(), 64, q.data());
    const block_q8_0* b = (const block_q8_0*)q.data();
    if (b[0].qs[3] != 0) fail_case("scalar", "kv_quantize_q8_0: NaN is not stored as 0");
    const float d = fp16_to_fp32(b[0].d);
    for (int j = 0; j < 32; ++j) {
        if (j == 3) continue;
        if (std::fabs(b[0].qs[j] * d - x[j]) > d * 0.5f + std::fabs(x[j]) * 2e-3f)
            fail_case("scalar", strfmt("kv_quantize_q8_0: value %d: %g -> %g", j, x[j], b[0].qs[j] * d));
    }
}

}  // namespace

int main() {
    const std::vector<const AttnKernelSet*> sets = attn_kernels_available();
    std::printf("attention kernel sets:");
    for (const AttnKernelSet* s : sets) std::printf(" %s", s->isa);
    std::printf(" (chosen: %s)\n", attn_kernels().isa);
    test_chunks(sets);
    test_avx512_matches_avx2(sets);
    test_loaders(sets);
    test_q8_0_quantizer();
    if (g_failures) {
        std::printf("%d failure(s)\n", g_failures);
        return 1;
    }
    std::printf("all attention kernel tests passed\n");
    return 0;
}
