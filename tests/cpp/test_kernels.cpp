// Kernel tests: every compiled kernel set this CPU supports against the scalar reference, and the
// reference itself against independent checks written here (the I2_S layout packed by a tiny
// packer that follows the format description literally, ties rounded to even, the torch formula
// of the activation scale).
//
//   test_kernels              run all tests; exit status 1 and a line naming ISA, function and
//                             shape for every failure
//   test_kernels --bench      GEMV (one token) timings per ISA, in GB/s of weight bytes read, and
//                             I2_S GEMM (128 tokens) in GMAC/s
//   test_kernels --print-isa  print the set kernels() picks (honours BITNET_ISA); exit 1 with the
//                             error message when it refuses
//
// Integer kernels must match bit for bit. Float kernels may differ from the reference only by
// summation order; for a K-term dot product each side's error is at most γ_K Σ|w_k x_k| with
// γ_K = K u / (1 - K u), u = 2^-24 (Higham, Accuracy and Stability, §3.1, any summation order,
// with or without FMA), so the two may differ by 2 γ_K Σ|w_k x_k| plus underflow noise.
// Every output buffer is pre-filled with a value no kernel can produce (NaN, INT32_MIN) so an
// element left unwritten, or written outside [m0, m1), fails.
#include <chrono>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kernels/kernels.h"
#include "util/common.h"

using namespace bitnet;

namespace {

int g_failures = 0;
std::mt19937_64 g_rng(20240617);

// Largest |kernel - reference| (and, for float kernels, its share of the tolerance) per
// "isa function", printed at the end.
struct MaxDiff {
    double diff = 0, ratio = 0;
};
std::map<std::string, MaxDiff> g_max_diff;

void note_diff(const char* isa, const char* fn, double diff, double ratio) {
    MaxDiff& m = g_max_diff[std::string(isa) + " " + fn];
    m.diff = std::max(m.diff, diff);
    m.ratio = std::max(m.ratio, ratio);
}

void report_failure(const char* isa, const char* fn, const std::string& shape, const std::string& what) {
    ++g_failures;
    if (g_failures <= 50) std::printf("FAIL [%s] %s %s: %s\n", isa, fn, shape.c_str(), what.c_str());
}

int64_t rand_int(int64_t lo, int64_t hi) {  // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng);
}

float rand_float(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }

// A buffer whose data() starts `offset` elements past a 64-byte boundary, to test misaligned bases.
template <typename T>
struct Buf {
    std::vector<T> raw;
    T* ptr;
    Buf(size_t n, size_t offset) : raw(n + offset + 64 / sizeof(T) + 1) {
        uintptr_t p = (uintptr_t)raw.data();
        size_t skip = ((64 - p % 64) % 64) / sizeof(T);
        ptr = raw.data() + skip + offset;
    }
    T* data() { return ptr; }
    T& operator[](size_t i) { return ptr[i]; }
};

// ---- I2_S: a literal packer and its independent check ---------------------------------------

// Packs an M x K matrix of ternary values {-1, 0, +1} as I2_S, following the format description
// word by word: code = t + 1; blocks of 128 values in 32 bytes; byte j of a block holds values
// j, j+32, j+64, j+96 in bit pairs 7-6, 5-4, 3-2, 1-0.
std::vector<uint8_t> pack_i2s(const std::vector<int8_t>& t, int64_t M, int64_t K) {
    std::vector<uint8_t> out((size_t)(M * K / 4), 0);
    for (int64_t m = 0; m < M; ++m) {
        for (int64_t b = 0; b < K / 128; ++b) {
            for (int64_t j = 0; j < 32; ++j) {
                const int8_t* v = &t[(size_t)(m * K + b * 128)];
                const int c0 = v[j] + 1, c1 = v[j + 32] + 1, c2 = v[j + 64] + 1, c3 = v[j + 96] + 1;
                out[(size_t)(m * K / 4 + b * 32 + j)] = (uint8_t)((c0 << 6) | (c1 << 4) | (c2 << 2) | c3);
            }
        }
    }
    return out;
}

void test_i2s_layout(const KernelSet& ks, int64_t M, int64_t K, int64_t N) {
    const std::string shape = strfmt("layout M=%" PRId64 " K=%" PRId64 " N=%" PRId64, M, K, N);
    std::vector<int8_t> t((size_t)(M * K)), q((size_t)(N * K));
    for (auto& v : t) v = (int8_t)rand_int(-1, 1);
    for (auto& v : q) v = (int8_t)rand_int(-128, 127);
    const std::vector<uint8_t> w = pack_i2s(t, M, K);
    std::vector<int32_t> out((size_t)(N * M), INT32_MIN);
    ks.i2s_gemm(w.data(), K, q.data(), K, N, out.data(), M, 0, M);
    for (int64_t n = 0; n < N; ++n) {
        int64_t qsum = 0;
        for (int64_t k = 0; k < K; ++k) qsum += q[(size_t)(n * K + k)];
        for (int64_t m = 0; m < M; ++m) {
            int64_t dot = 0;
            for (int64_t k = 0; k < K; ++k) dot += t[(size_t)(m * K + k)] * q[(size_t)(n * K + k)];
            const int64_t got = (int64_t)out[(size_t)(n * M + m)] - qsum;
            if (got != dot) {
                report_failure(ks.isa, "i2s_gemm", shape,
                               strfmt("ternary dot at n=%" PRId64 " m=%" PRId64 ": got %" PRId64 " want %" PRId64, n, m, got, dot));
                return;
            }
        }
    }
}

// ---- I2_S vs reference -----------------------------------------------------------------------

enum class ActKind { random, all_min, all_max };

struct I2sCase {
    int64_t M, K, N, m0, m1, ldq, ldo;
    ActKind act;
    bool all_plus_one;  // every code 2 (+1): with extreme activations, the largest sums
};

void test_i2s_case(const std::vector<const KernelSet*>& sets, const I2sCase& c) {
    const std::string shape = strfmt("M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " rows=[%" PRId64 ",%" PRId64 ") ldq=%" PRId64 " ldo=%" PRId64 "%s",
                                     c.M, c.K, c.N, c.m0, c.m1, c.ldq, c.ldo,
                                     c.act == ActKind::all_min ? " act=-128" : c.act == ActKind::all_max ? " act=127" : "");
    Buf<uint8_t> w((size_t)(c.M * c.K / 4), (size_t)rand_int(1, 63));
    for (int64_t i = 0; i < c.M * c.K / 4; ++i) {
        uint8_t b = 0;
        for (int p = 0; p < 4; ++p) b = (uint8_t)((b << 2) | (c.all_plus_one ? 2 : rand_int(0, 2)));
        w[(size_t)i] = b;
    }
    Buf<int8_t> q((size_t)(c.N * c.ldq), (size_t)rand_int(1, 63));
    for (int64_t i = 0; i < c.N * c.ldq; ++i)
        q[(size_t)i] = c.act == ActKind::all_min ? -128 : c.act == ActKind::all_max ? 127 : (int8_t)rand_int(-128, 127);

    const size_t out_n = (size_t)(c.N * c.ldo);
    std::vector<int32_t> want(out_n, INT32_MIN);
    kernels_ref().i2s_gemm(w.data(), c.K, q.data(), c.ldq, c.N, want.data(), c.ldo, c.m0, c.m1);
    for (const KernelSet* ks : sets) {
        Buf<int32_t> got(out_n, (size_t)rand_int(1, 15));
        std::fill(got.ptr, got.ptr + out_n, INT32_MIN);
        ks->i2s_gemm(w.data(), c.K, q.data(), c.ldq, c.N, got.data(), c.ldo, c.m0, c.m1);
        int64_t max_diff = 0, first_bad = -1;
        for (size_t i = 0; i < out_n; ++i) {
            const int64_t d = std::llabs((int64_t)got[i] - (int64_t)want[i]);
            if (d != 0 && first_bad < 0) first_bad = (int64_t)i;
            max_diff = std::max(max_diff, d);
        }
        note_diff(ks->isa, "i2s_gemm", (double)max_diff, 0);
        if (first_bad >= 0) {
            report_failure(ks->isa, "i2s_gemm", shape,
                           strfmt("max |diff| %" PRId64 "; first at n=%" PRId64 " m=%" PRId64 ": got %d want %d", max_diff,
                                  first_bad / c.ldo, first_bad % c.ldo, got[(size_t)first_bad], want[(size_t)first_bad]));
        }
    }
    // The reference itself must have written exactly rows [m0, m1) of every token.
    for (int64_t n = 0; n < c.N; ++n)
        for (int64_t m = 0; m < c.ldo; ++m)
            if ((want[(size_t)(n * c.ldo + m)] == INT32_MIN) == (m >= c.m0 && m < c.m1)) {
                report_failure("scalar", "i2s_gemm", shape, strfmt("wrote outside rows or left a row unwritten (n=%" PRId64 " m=%" PRId64 ")", n, m));
                return;
            }
}

void test_i2s(const std::vector<const KernelSet*>& sets) {
    const int64_t Ks[] = {128, 256, 384, 640, 2560, 6912};
    const int64_t Ms[] = {1, 3, 7, 64, 67, 256};
    const int64_t Ns[] = {1, 2, 3, 4, 5, 8, 17};
    int i = 0;
    for (int64_t K : Ks)
        for (int64_t M : Ms)
            for (int64_t N : Ns) {
                I2sCase c{M, K, N, 0, M, K, M, ActKind::random, false};
                if (i++ % 2 == 1) {  // every other case: a row range not starting at 0, wide strides
                    c.m0 = M > 1 ? rand_int(1, M - 1) : 0;
                    c.m1 = rand_int(c.m0 + 1, M);
                    c.ldq = K + rand_int(1, 200);
                    c.ldo = M + rand_int(1, 9);
                }
                test_i2s_case(sets, c);
            }
    // Extreme activations against all-(+1) and random codes: the largest |sums| any kernel sees.
    for (ActKind act : {ActKind::all_min, ActKind::all_max})
        for (bool plus : {true, false})
            for (int64_t K : {128, 2560, 6912}) test_i2s_case(sets, I2sCase{7, K, 5, 0, 7, K, 7, act, plus});
}

// ---- activation quantization -----------------------------------------------------------------

// torch's scale: `127 / t` is evaluated as `t.reciprocal() * 127` (two float32 roundings).
float torch_scale(float amax) {
    volatile float r = 1.0f / std::max(amax, 1e-5f);  // volatile: keep the two roundings apart
    return r * 127.0f;
}

void check_quantize(const std::vector<const KernelSet*>& sets, const std::vector<float>& x, const char* label) {
    const int64_t k = (int64_t)x.size();
    const std::string shape = strfmt("k=%" PRId64 " %s", k, label);
    Buf<float> xb((size_t)k, (size_t)rand_int(1, 15));
    std::copy(x.begin(), x.end(), xb.ptr);
    float amax = 0.0f;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const float s_want = torch_scale(amax);

    std::vector<int8_t> q_ref((size_t)k);
    float s_ref = 0.0f;
    int32_t sum_ref = 0;
    kernels_ref().quantize_act(xb.data(), k, q_ref.data(), &s_ref, &sum_ref);
    int64_t sum_check = 0;
    for (int8_t v : q_ref) sum_check += v;
    if (std::memcmp(&s_ref, &s_want, sizeof(float)) != 0 || sum_check != sum_ref)
        report_failure("scalar", "quantize_act", shape, strfmt("scale %.9g want %.9g, qsum %d want %" PRId64, s_ref, s_want, sum_ref, sum_check));

    for (const KernelSet* ks : sets) {
        Buf<int8_t> q((size_t)k + 64, (size_t)rand_int(1, 63));
        std::memset(q.data(), 0x55, (size_t)k + 64);
        float s = NAN;
        int32_t sum = INT32_MIN;
        ks->quantize_act(xb.data(), k, q.data(), &s, &sum);
        int max_diff = 0;
        for (int64_t i = 0; i < k; ++i) max_diff = std::max(max_diff, std::abs(q[(size_t)i] - q_ref[(size_t)i]));
        note_diff(ks->isa, "quantize_act", max_diff, 0);
        bool guard_ok = true;
        for (int64_t i = k; i < k + 64; ++i) guard_ok &= q[(size_t)i] == 0x55;
        if (max_diff != 0 || sum != sum_ref || std::memcmp(&s, &s_ref, sizeof(float)) != 0 || !guard_ok)
            report_failure(ks->isa, "quantize_act", shape,
                           strfmt("max |q diff| %d, scale %.9g vs %.9g, qsum %d vs %d%s", max_diff, s, s_ref, sum, sum_ref,
                                  guard_ok ? "" : ", wrote past q[k-1]"));
    }
}

// Values whose x*s is exactly j + 0.5 must round to the even neighbour (torch.round), for every set.
void test_quantize_ties(const std::vector<const KernelSet*>& sets) {
    int ties = 0;
    for (float amax : {127.0f / 64.0f, 1.0f, 3.0f, 0.37f, 1000.0f}) {
        const float s = torch_scale(amax);
        std::vector<float> x = {amax};
        std::vector<int> expect = {127};
        for (int j = -127; j <= 126; ++j) {
            const float t = (float)j + 0.5f;
            const float v = t / s;
            volatile float prod = v * s;  // volatile: a plain float32 product, as the kernels do
            if (prod != t || std::fabs(v) > amax) continue;
            x.push_back(v);
            expect.push_back(j % 2 == 0 ? j : j + 1);
        }
        ties += (int)x.size() - 1;
        for (const KernelSet* ks : sets) {
            std::vector<int8_t> q(x.size());
            float sc;
            int32_t sum;
            ks->quantize_act(x.data(), (int64_t)x.size(), q.data(), &sc, &sum);
            for (size_t i = 0; i < x.size(); ++i)
                if (q[i] != expect[i]) {
                    report_failure(ks->isa, "quantize_act", strfmt("ties amax=%g", amax),
                                   strfmt("x*s=%.1f rounded to %d, want %d (half to even)", (double)x[i] * s, q[i], expect[i]));
                    break;
                }
        }
    }
    if (ties < 50) report_failure("test", "quantize_act", "ties", strfmt("only %d exact ties constructed", ties));
}

// A row holding a NaN or an infinity quantizes to q = 0, qsum = 0 and scale 0 (kernels.h), in
// every set, wherever the bad value sits (vector body, tail) and whatever the other values are.
void test_quantize_nonfinite(const std::vector<const KernelSet*>& sets) {
    const float bad_values[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (int64_t k : {1, 7, 8, 9, 16, 33, 100, 2560}) {
        for (float bad : bad_values) {
            for (int64_t pos : {int64_t(0), k / 2, k - 1}) {
                std::vector<float> x((size_t)k);
                for (auto& v : x) v = rand_float(-3.0f, 3.0f);
                x[(size_t)pos] = bad;
                const std::string shape = strfmt("k=%" PRId64 " x[%" PRId64 "]=%g", k, pos, (double)bad);
                for (const KernelSet* ks : sets) {
                    std::vector<int8_t> q((size_t)k + 16, 0x55);
                    float s = NAN;
                    int32_t sum = INT32_MIN;
                    ks->quantize_act(x.data(), k, q.data(), &s, &sum);
                    bool zeros = true, guard = true;
                    for (int64_t i = 0; i < k; ++i) zeros &= q[(size_t)i] == 0;
                    for (int64_t i = k; i < k + 16; ++i) guard &= q[(size_t)i] == 0x55;
                    if (!zeros || !guard || s != 0.0f || sum != 0)
                        report_failure(ks->isa, "quantize_act", shape,
                                       strfmt("non-finite row: scale %g qsum %d, q %s%s", (double)s, sum,
                                              zeros ? "zero" : "not all zero", guard ? "" : ", wrote past q[k-1]"));
                }
            }
        }
    }
}

void test_quantize(const std::vector<const KernelSet*>& sets) {
    // The scale must follow torch (reciprocal, then * 127), not a single division: find an amax
    // where the two differ and check the reference's scale against the torch formula there.
    for (float a = 1.0f;; a = std::nextafter(a, 2.0f)) {
        if (torch_scale(a) != 127.0f / a) {
            check_quantize(sets, {a, -a / 3}, "reciprocal-vs-division");
            break;
        }
    }
    test_quantize_ties(sets);
    const int64_t lengths[] = {1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 100, 128, 129, 2560, 6912};
    for (int64_t k : lengths) {
        std::vector<float> x((size_t)k);
        for (auto& v : x) v = rand_float(-1.0f, 1.0f);
        check_quantize(sets, x, "uniform");
        // Not rand_float(-3e38f, 3e38f): the width of that range overflows float, and some
        // standard libraries (aarch64 libstdc++) then return infinities.
        for (auto& v : x) v = rand_float(-1.0f, 1.0f) * 3e38f;
        check_quantize(sets, x, "huge");
        for (auto& v : x) v = rand_float(-1e-30f, 1e-30f);
        check_quantize(sets, x, "tiny");
        for (auto& v : x) v = std::ldexp(rand_float(-1.0f, 1.0f), (int)rand_int(-20, 20));
        check_quantize(sets, x, "wide");
        std::fill(x.begin(), x.end(), 0.0f);
        check_quantize(sets, x, "zeros");
        std::fill(x.begin(), x.end(), -0.0f);
        check_quantize(sets, x, "negative zeros");
        for (auto& v : x) v = rand_int(0, 3) == 0 ? -0.0f : rand_float(-5.0f, 5.0f);
        x[(size_t)rand_int(0, k - 1)] = -7.0f;  // the max at a random position, negative
        check_quantize(sets, x, "mixed");
        for (auto& v : x) v = rand_float(-1.0f, 1.0f) * 1e-38f;  // subnormals and the smallest normals
        x[(size_t)rand_int(0, k - 1)] = FLT_MAX;                  // beside the largest finite value
        check_quantize(sets, x, "extremes");
    }
    test_quantize_nonfinite(sets);
}

// ---- float GEMM ------------------------------------------------------------------------------

uint16_t rand_f16() {
    // Random sign and mantissa, exponent from subnormal (0) to 2^5: finite values up to ~64.
    const uint16_t sign = (uint16_t)(rand_int(0, 1) << 15);
    const uint16_t exp = (uint16_t)(rand_int(0, 20) << 10);
    return (uint16_t)(sign | exp | (uint16_t)rand_int(0, 1023));
}

template <typename WT>
void test_fgemm_case(const std::vector<const KernelSet*>& sets, const char* fn, int64_t M, int64_t K, int64_t N,
                     int64_t m0, int64_t m1, int64_t ldx, int64_t ldy) {
    const std::string shape = strfmt("M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " rows=[%" PRId64 ",%" PRId64 ") ldx=%" PRId64 " ldy=%" PRId64,
                                     M, K, N, m0, m1, ldx, ldy);
    Buf<WT> w((size_t)(M * K), (size_t)rand_int(1, 15));
    std::vector<float> wf((size_t)(M * K));
    for (int64_t i = 0; i < M * K; ++i) {
        if constexpr (sizeof(WT) == 2) {
            w[(size_t)i] = rand_f16();
            wf[(size_t)i] = fp16_to_fp32(w[(size_t)i]);
        } else {
            w[(size_t)i] = rand_float(-2.0f, 2.0f);
            wf[(size_t)i] = w[(size_t)i];
        }
    }
    Buf<float> x((size_t)(N * ldx), (size_t)rand_int(1, 15));
    for (int64_t i = 0; i < N * ldx; ++i) x[(size_t)i] = rand_float(-1.0f, 1.0f);

    auto run = [&](const KernelSet& ks, float* y) {
        if constexpr (sizeof(WT) == 2)
            ks.f16_gemm(w.data(), K, x.data(), ldx, N, y, ldy, m0, m1);
        else
            ks.f32_gemm(w.data(), K, x.data(), ldx, N, y, ldy, m0, m1);
    };
    const size_t out_n = (size_t)(N * ldy);
    std::vector<float> want(out_n, NAN);
    run(kernels_ref(), want.data());
    const double u = std::ldexp(1.0, -24), gamma = K * u / (1 - K * u);
    for (const KernelSet* ks : sets) {
        Buf<float> got(out_n, (size_t)rand_int(1, 15));
        std::fill(got.ptr, got.ptr + out_n, NAN);
        run(*ks, got.data());
        double max_diff = 0, max_ratio = 0;
        std::string bad;
        for (int64_t n = 0; n < N && bad.empty(); ++n) {
            for (int64_t m = 0; m < ldy; ++m) {
                const float g = got[(size_t)(n * ldy + m)], r = want[(size_t)(n * ldy + m)];
                const bool inside = m >= m0 && m < m1;
                if (!inside) {
                    if (!std::isnan(g)) bad = strfmt("wrote outside rows at n=%" PRId64 " m=%" PRId64, n, m);
                    continue;
                }
                double abs_sum = 0;
                for (int64_t k = 0; k < K; ++k) abs_sum += std::fabs((double)wf[(size_t)(m * K + k)] * x[(size_t)(n * ldx + k)]);
                const double tol = 2 * gamma * abs_sum + K * 1e-44, diff = std::fabs((double)g - r);
                max_diff = std::max(max_diff, diff);
                max_ratio = std::max(max_ratio, diff / tol);
                if (!(diff <= tol)) {  // also catches NaN (unwritten)
                    bad = strfmt("at n=%" PRId64 " m=%" PRId64 ": got %.9g want %.9g, |diff| %.3g > tol %.3g", n, m, g, r, diff, tol);
                    break;
                }
            }
        }
        note_diff(ks->isa, fn, max_diff, max_ratio);
        if (!bad.empty()) report_failure(ks->isa, fn, shape, bad + strfmt(" (max |diff| %.3g)", max_diff));
    }
}

void test_fgemm(const std::vector<const KernelSet*>& sets) {
    const int64_t Ks[] = {1, 3, 15, 16, 17, 31, 33, 64, 100, 127, 128, 257, 2560};
    const int64_t Ms[] = {1, 3, 7, 64, 67};
    const int64_t Ns[] = {1, 2, 3, 4, 5, 8, 17};
    int i = 0;
    for (int64_t K : Ks)
        for (int64_t M : Ms)
            for (int64_t N : Ns) {
                int64_t m0 = 0, m1 = M, ldx = K, ldy = M;
                if (i++ % 2 == 1) {
                    m0 = M > 1 ? rand_int(1, M - 1) : 0;
                    m1 = rand_int(m0 + 1, M);
                    ldx = K + rand_int(1, 40);
                    ldy = M + rand_int(1, 9);
                }
                test_fgemm_case<float>(sets, "f32_gemm", M, K, N, m0, m1, ldx, ldy);
                test_fgemm_case<uint16_t>(sets, "f16_gemm", M, K, N, m0, m1, ldx, ldy);
            }
}

// ---- benchmark -------------------------------------------------------------------------------

// I2_S GEMV with the weights coming from DRAM, as in generation: 1.1 GB of 2560 x 6912 matrices
// (far more than any cache), each multiplied once per pass.
void bench_i2s_gemv_dram() {
    const int64_t M = 2560, K = 6912, n_mat = 256;
    const size_t mat_bytes = (size_t)(M * K / 4);
    std::vector<uint8_t> w(mat_bytes * n_mat);
    for (size_t i = 0; i < w.size(); ++i) w[i] = (uint8_t)(i * 2654435761u >> 24) & 0xAA;
    std::vector<int8_t> q((size_t)K);
    for (auto& v : q) v = (int8_t)rand_int(-128, 127);
    std::vector<int32_t> out((size_t)M);
    std::printf("\nI2_S GEMV from DRAM, one thread: %" PRId64 " matrices %" PRId64 " x %" PRId64 " (%.2f GB)\n", n_mat,
                M, K, (double)w.size() / 1e9);
    for (const KernelSet* ks : kernels_available()) {
        if (ks == &kernels_ref()) continue;
        const double t = time_best([&] {
            for (int64_t i = 0; i < n_mat; ++i)
                ks->i2s_gemm(w.data() + i * mat_bytes, K, q.data(), K, 1, out.data(), M, 0, M);
        }, 0.0);
        std::printf("%-12s %10.2f GB/s\n", ks->isa, (double)w.size() / t / 1e9);
    }
}

// I2_S GEMM over a prompt-sized batch, one thread: GMAC/s (multiply-adds of codes by activations)
// per set, to compare with the int8 dot-product peak of the core (64 per cycle for one 512-bit
// VPDPBUSD per cycle).
void bench_i2s_gemm() {
    std::printf("\nI2_S GEMM, one thread, N=128 tokens, best of repeated calls\n");
    std::printf("%-12s %8s %8s %8s %10s %10s\n", "isa", "M", "K", "N", "time ms", "GMAC/s");
    const struct { int64_t M, K; } shapes[] = {{6912, 2560}, {2560, 6912}, {2560, 2560}};
    const int64_t N = 128;
    for (const KernelSet* ks : kernels_available()) {
        if (ks == &kernels_ref()) continue;  // minutes per call
        for (const auto& sh : shapes) {
            std::vector<uint8_t> w((size_t)(sh.M * sh.K / 4));
            for (auto& b : w) b = (uint8_t)rand_int(0, 255) & 0xAA;
            std::vector<int8_t> q((size_t)(N * sh.K));
            for (auto& v : q) v = (int8_t)rand_int(-128, 127);
            std::vector<int32_t> out((size_t)(N * sh.M));
            const double t = time_best([&] { ks->i2s_gemm(w.data(), sh.K, q.data(), sh.K, N, out.data(), sh.M, 0, sh.M); }, 1.0);
            std::printf("%-12s %8" PRId64 " %8" PRId64 " %8" PRId64 " %10.3f %10.2f\n", ks->isa, sh.M, sh.K, N, t * 1e3,
                        (double)sh.M * sh.K * N / t / 1e9);
        }
    }
}

int run_bench() {
    std::printf("GEMV (N=1), one thread, best of repeated calls; GB/s = weight bytes / time\n");
    std::printf("%-12s %-8s %8s %8s %10s %10s\n", "isa", "kernel", "M", "K", "time ms", "GB/s");
    const struct { int64_t M, K; } i2s_shapes[] = {{6912, 2560}, {2560, 6912}};
    for (const KernelSet* ks : kernels_available()) {
        for (const auto& sh : i2s_shapes) {
            std::vector<uint8_t> w((size_t)(sh.M * sh.K / 4));
            for (auto& b : w) b = (uint8_t)rand_int(0, 255) & 0xAA;  // codes 0 or 2
            std::vector<int8_t> q((size_t)sh.K);
            for (auto& v : q) v = (int8_t)rand_int(-128, 127);
            std::vector<int32_t> out((size_t)sh.M);
            const double t = time_best([&] { ks->i2s_gemm(w.data(), sh.K, q.data(), sh.K, 1, out.data(), sh.M, 0, sh.M); },
                                       ks == &kernels_ref() ? 0.2 : 0.5);
            std::printf("%-12s %-8s %8" PRId64 " %8" PRId64 " %10.3f %10.2f\n", ks->isa, "i2s", sh.M, sh.K, t * 1e3,
                        (double)w.size() / t / 1e9);
        }
        const int64_t M = 128256, K = 2560;
        std::vector<uint16_t> w((size_t)(M * K));
        for (size_t i = 0; i < w.size(); ++i) w[i] = (uint16_t)(0x3000 + (i * 2654435761u >> 20 & 0x7ff));
        std::vector<float> x((size_t)K);
        for (auto& v : x) v = rand_float(-1.0f, 1.0f);
        std::vector<float> y((size_t)M);
        const double t = time_best([&] { ks->f16_gemm(w.data(), K, x.data(), K, 1, y.data(), M, 0, M); },
                                   ks == &kernels_ref() ? 0.0 : 1.0);
        std::printf("%-12s %-8s %8" PRId64 " %8" PRId64 " %10.3f %10.2f\n", ks->isa, "f16", M, K, t * 1e3,
                    (double)w.size() * 2 / t / 1e9);
    }
    bench_i2s_gemv_dram();
    bench_i2s_gemm();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "--bench") return run_bench();
    if (mode == "--print-isa") {
        try {
            std::printf("%s\n", kernels().isa);
            return 0;
        } catch (const Error& e) {
            std::fprintf(stderr, "error: %s\n", e.what());
            return 1;
        }
    }
    if (!mode.empty()) {
        std::fprintf(stderr, "error: unknown argument '%s'; use no argument, --bench or --print-isa\n", mode.c_str());
        return 2;
    }

    const std::vector<const KernelSet*> sets = kernels_available();
    std::printf("kernel sets:");
    for (const KernelSet* ks : sets) std::printf(" %s", ks->isa);
    std::printf("\n");

    for (const KernelSet* ks : sets) {
        test_i2s_layout(*ks, 1, 128, 1);
        test_i2s_layout(*ks, 5, 384, 3);
        test_i2s_layout(*ks, 9, 2560, 6);
    }
    test_quantize(sets);
    test_i2s(sets);
    test_fgemm(sets);

    for (const auto& [name, m] : g_max_diff)
        std::printf("  %-26s max |diff| vs scalar %-10.3g%s\n", name.c_str(), m.diff,
                    m.ratio > 0 ? strfmt(" (%.3g of the tolerance)", m.ratio).c_str() : "");
    if (g_failures) {
        std::printf("%d failure(s)\n", g_failures);
        return 1;
    }
    std::printf("all kernel tests passed\n");
    return 0;
}
