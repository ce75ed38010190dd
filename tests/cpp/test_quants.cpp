// Tests of the llama.cpp block types (kernels/quants.h): every compiled QuantKernelSet this CPU
// supports against the scalar reference, and the reference against an independent computation
// (dequantize_row of types.cpp, then a double-precision dot product with the dequantized int8
// activations). tests/test_quants.py checks dequantize_row itself against gguf-py.
//
//   test_quants           run all tests; exit status 1 and a line naming ISA, kernel and shape for
//                         every failure
//   test_quants --bench   GEMV speed of the output-layer types on the 128256 x 2560 matrix of
//                         BitNet b1.58 2B4T (1 and 2 threads, GB/s of weight bytes read), of the
//                         ternary types on its linear shapes, and a plain read loop for reference
//   test_quants --dequantize TYPE K IN OUT
//                         driver for tests/test_quants.py: rows of raw TYPE blocks (IN) to float32
//   test_quants --gemm TYPE M K N W X OUT
//                         Q8_0/Q4_0/Q6_K: float32 activations X [N, K] quantized per block, times W
//                         [M, K], float32 [N, M] out. TQ1_0/TQ2_0: int8 activations X [N, K];
//                         out: float32 [N, M] of the f32 kernel, then int32 [N, M] of the i32 one.
//                         I2_S: W is utils/ternary.py's pack_i2s payload for any K, X int8 [N, K],
//                         out int32 [N, M] (code products). The kernels of the ISA BITNET_ISA picks.
//
// The ternary kernels must match the reference bit for bit. The float-weight kernels may sum their
// blocks in another order; the integer block products are exact and each float step rounds once
// (relative u = 2^-24), so with T = Σ |dW dA w q| over all values every set is within γ_n T
// (n = K + 3 steps at most, γ_n = n u / (1 - n u)) of the exact value, computed here in double. Outputs are pre-filled with NaN / INT32_MIN so an element left unwritten, or written
// outside [m0, m1), fails.
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "util/common.h"

using namespace bitnet;

namespace {

int g_failures = 0;
std::mt19937_64 g_rng(20250105);

void report_failure(const char* isa, const char* fn, const std::string& shape, const std::string& what) {
    ++g_failures;
    if (g_failures <= 50) std::printf("FAIL [%s] %s %s: %s\n", isa, fn, shape.c_str(), what.c_str());
}

int64_t rand_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng); }
float rand_float(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }

// Random blocks of `type` for an M x K matrix, every byte of the layout meaningful.
//   extreme: Q8_0 weights all -128, Q4_0 all nibble 0 (-8), Q6_K all code 0 (-32) and scales
//   -128, ternary all +1: the largest magnitudes each kernel must carry.
//   mixed_d: ternary blocks get different d (else one d for the whole matrix, as BitNet's).
std::vector<uint8_t> random_matrix(uint32_t type, int64_t M, int64_t K, bool extreme, bool mixed_d) {
    const size_t rb = quant_row_bytes(type, K);
    std::vector<uint8_t> w(rb * (size_t)M);
    const uint16_t d_common = fp32_to_fp16(rand_float(0.01f, 2.0f));
    auto rand_d = [&] { return fp32_to_fp16(rand_float(-0.5f, 0.5f)); };
    const int64_t bs = type_traits(type)->block_size, nb = M * (K / bs);
    for (int64_t b = 0; b < nb; ++b) {
        uint8_t* p = w.data() + b * type_traits(type)->block_bytes;
        switch (type) {
        case TYPE_Q8_0: {
            block_q8_0& x = *(block_q8_0*)p;
            x.d = rand_d();
            for (auto& v : x.qs) v = extreme ? (int8_t)-128 : (int8_t)rand_int(-128, 127);
            break;
        }
        case TYPE_Q4_0: {
            block_q4_0& x = *(block_q4_0*)p;
            x.d = rand_d();
            for (auto& v : x.qs) v = extreme ? 0 : (uint8_t)rand_int(0, 255);
            break;
        }
        case TYPE_Q6_K: {
            block_q6_K& x = *(block_q6_K*)p;
            x.d = fp32_to_fp16(rand_float(-0.01f, 0.01f));
            for (auto& v : x.ql) v = extreme ? 0 : (uint8_t)rand_int(0, 255);
            for (auto& v : x.qh) v = extreme ? 0 : (uint8_t)rand_int(0, 255);
            for (auto& v : x.scales) v = extreme ? (int8_t)-128 : (int8_t)rand_int(-128, 127);
            break;
        }
        case TYPE_TQ1_0: {
            block_tq1_0& x = *(block_tq1_0*)p;
            x.d = mixed_d ? rand_d() : d_common;
            // every byte is a valid encoding: (3v) >> 8 <= 2; 0xFF has all digits 2 (+1)
            for (auto& v : x.qs) v = extreme ? 0xFF : (uint8_t)rand_int(0, 255);
            for (auto& v : x.qh) v = extreme ? 0xFF : (uint8_t)rand_int(0, 255);
            break;
        }
        case TYPE_TQ2_0: {
            block_tq2_0& x = *(block_tq2_0*)p;
            x.d = mixed_d ? rand_d() : d_common;
            for (auto& v : x.qs) {
                uint8_t byte = 0;
                for (int l = 0; l < 4; ++l) byte = (uint8_t)(byte << 2 | (extreme ? 2 : rand_int(0, 2)));
                v = byte;
            }
            break;
        }
        default: BITNET_ASSERT(!"type");
        }
    }
    return w;
}

std::string shape_str(int64_t M, int64_t K, int64_t N, int64_t m0, int64_t m1, const char* extra) {
    return strfmt("M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " rows=[%" PRId64 ",%" PRId64 ")%s", M, K, N, m0, m1, extra);
}

// ---- float-weight types ------------------------------------------------------------------------

void test_qgemm_case(const std::vector<const QuantKernelSet*>& sets, uint32_t type, int64_t M, int64_t K,
                     int64_t N, int64_t m0, int64_t m1, bool extreme) {
    const char* name = type_traits(type)->name;
    const std::string shape = shape_str(M, K, N, m0, m1, extreme ? " extreme" : "");
    const std::vector<uint8_t> w = random_matrix(type, M, K, extreme, true);
    std::vector<float> x((size_t)(N * K));
    for (auto& v : x) v = extreme ? (rand_int(0, 1) ? 3.0f : -3.0f) : rand_float(-2.0f, 2.0f);
    ActBlocks a;
    act_blocks_resize(a, N, K, act_block_size(type));
    for (int64_t n = 0; n < N; ++n) act_blocks_quantize_row(x.data() + n * K, a, n);

    // independent: dequantized weights . dequantized activations in double; T = Σ|terms|
    const int64_t bs = a.bs;
    std::vector<double> exact((size_t)(N * M)), T((size_t)(N * M));
    std::vector<float> wrow((size_t)K);
    for (int64_t m = m0; m < m1; ++m) {
        dequantize_row(type, w.data(), K, m, wrow.data());
        for (int64_t n = 0; n < N; ++n) {
            double s = 0, t = 0;
            for (int64_t k = 0; k < K; ++k) {
                const double p = (double)wrow[k] * a.q[n * K + k] * a.d[n * (K / bs) + k / bs];
                s += p;
                t += std::fabs(p);
            }
            exact[n * M + m] = s;
            T[n * M + m] = t;
        }
    }
    const double u = std::ldexp(1.0, -24), steps = (double)K + 3, gamma = steps * u / (1 - steps * u);
    for (const QuantKernelSet* ks : sets) {
        const qgemm_fn gemm = quant_gemm_for(*ks, type);
        std::vector<float> y((size_t)(N * M), NAN);
        gemm(w.data(), K, a, y.data(), M, m0, m1);
        // Each side within γ T of the exact value; a decoding error (wrong nibble, scale or
        // offset) moves a result by about a whole term, far beyond that.
        for (int64_t n = 0; n < N; ++n)
            for (int64_t m = 0; m < M; ++m) {
                const float got = y[n * M + m];
                const bool inside = m >= m0 && m < m1;
                if (!inside) {
                    if (!std::isnan(got)) {
                        report_failure(ks->isa, name, shape, strfmt("wrote row %" PRId64 " outside the range", m));
                        return;
                    }
                    continue;
                }
                const double want = exact[n * M + m];
                const double tol = gamma * T[n * M + m] + 1e-30;
                if (!(std::fabs(got - want) <= tol)) {
                    report_failure(ks->isa, name, shape,
                                   strfmt("n=%" PRId64 " m=%" PRId64 ": got %.9g want %.9g (tolerance %.3g)", n, m, got, want, tol));
                    return;
                }
            }
    }
}

// ---- ternary types ----------------------------------------------------------------------------

void test_tq_case(const std::vector<const QuantKernelSet*>& sets, uint32_t type, int64_t M, int64_t K,
                  int64_t N, int64_t m0, int64_t m1, int64_t ldq, bool extreme, bool mixed_d) {
    const char* name = type_traits(type)->name;
    const std::string shape = shape_str(M, K, N, m0, m1, strfmt(" ldq=%" PRId64 "%s%s", ldq, extreme ? " extreme" : "",
                                                               mixed_d ? " mixed-d" : "").c_str());
    const std::vector<uint8_t> w = random_matrix(type, M, K, extreme, mixed_d);
    std::vector<int8_t> q((size_t)(N * ldq + 7));
    int8_t* Q = q.data() + rand_int(0, 7);  // a misaligned base
    for (int64_t i = 0; i < N * ldq; ++i) Q[i] = extreme ? (int8_t)-128 : (int8_t)rand_int(-128, 127);

    // independent: decode with dequantize_row (value = (code - 1) * d) and compare the reference's
    // integer code products (i32) and block sums (f32) with it
    std::vector<int64_t> want_i((size_t)(N * M));
    std::vector<double> want_f((size_t)(N * M));
    std::vector<float> wrow((size_t)K);
    const int64_t nb = K / QK_K;
    for (int64_t m = m0; m < m1; ++m) {
        dequantize_row(type, w.data(), K, m, wrow.data());
        const uint8_t* row = w.data() + m * quant_row_bytes(type, K);
        for (int64_t n = 0; n < N; ++n) {
            int64_t codes = 0;
            double f = 0;
            for (int64_t b = 0; b < nb; ++b) {
                const float d = tq_block_d(type, row, b);
                int64_t t = 0;
                for (int64_t k = b * QK_K; k < (b + 1) * QK_K; ++k) {
                    // d = 0 blocks carry no codes through dequantize_row; the f32 contract then
                    // needs nothing from them, and random d is never exactly 0 here
                    const int64_t tern = d != 0.0f ? (int64_t)std::lrint(wrow[k] / d) : 0;
                    t += tern * Q[n * ldq + k];
                    codes += (tern + 1) * Q[n * ldq + k];
                }
                f += (double)d * (double)t;
            }
            want_i[n * M + m] = codes;
            want_f[n * M + m] = f;
        }
    }
    const tq_gemm_i32_fn ref_i = type == TYPE_TQ1_0 ? quant_kernels_ref().tq1_0_gemm_i32 : quant_kernels_ref().tq2_0_gemm_i32;
    const tq_gemm_f32_fn ref_f = type == TYPE_TQ1_0 ? quant_kernels_ref().tq1_0_gemm_f32 : quant_kernels_ref().tq2_0_gemm_f32;
    std::vector<int32_t> ri((size_t)(N * M), INT32_MIN);
    std::vector<float> rf((size_t)(N * M), NAN);
    ref_i(w.data(), K, Q, ldq, N, ri.data(), M, m0, m1);
    ref_f(w.data(), K, Q, ldq, N, rf.data(), M, m0, m1);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t m = m0; m < m1; ++m) {
            const double tol = 1e-5 * (std::fabs(want_f[n * M + m]) + 1);  // nb float roundings
            if (ri[n * M + m] != want_i[n * M + m] || !(std::fabs(rf[n * M + m] - want_f[n * M + m]) <= tol)) {
                report_failure("scalar", name, shape, strfmt("reference vs decoded weights at n=%" PRId64 " m=%" PRId64, n, m));
                return;
            }
        }
    for (const QuantKernelSet* ks : sets) {
        const tq_gemm_i32_fn gi = type == TYPE_TQ1_0 ? ks->tq1_0_gemm_i32 : ks->tq2_0_gemm_i32;
        const tq_gemm_f32_fn gf = type == TYPE_TQ1_0 ? ks->tq1_0_gemm_f32 : ks->tq2_0_gemm_f32;
        std::vector<int32_t> yi((size_t)(N * M), INT32_MIN);
        std::vector<float> yf((size_t)(N * M), NAN);
        gi(w.data(), K, Q, ldq, N, yi.data(), M, m0, m1);
        gf(w.data(), K, Q, ldq, N, yf.data(), M, m0, m1);
        for (size_t i = 0; i < yi.size(); ++i) {
            const bool same_f = std::memcmp(&yf[i], &rf[i], sizeof(float)) == 0;
            if (yi[i] != ri[i] || !same_f) {
                report_failure(ks->isa, name, shape,
                               strfmt("at n=%zu m=%zu: i32 %d vs %d, f32 %.9g vs %.9g", i / (size_t)M, i % (size_t)M,
                                      yi[i], ri[i], yf[i], rf[i]));
                return;
            }
        }
    }
}

// ---- activation quantizer -----------------------------------------------------------------------

void test_act_blocks() {
    // d = absmax/127 per block, |q| <= 127 with the extreme at ±127, sums of 16 for bs 256
    for (const int64_t bs : {QK8_0, QK_K}) {
        const int64_t K = 3 * bs;
        std::vector<float> x((size_t)K);
        for (auto& v : x) v = rand_float(-5.0f, 5.0f);
        for (int64_t i = 0; i < bs; ++i) x[(size_t)(bs + i)] = 0.0f;  // an all-zero block
        ActBlocks a;
        act_blocks_resize(a, 1, K, bs);
        act_blocks_quantize_row(x.data(), a, 0);
        for (int64_t b = 0; b < 3; ++b) {
            float amax = 0;
            int qmax = 0;
            for (int64_t i = b * bs; i < (b + 1) * bs; ++i) {
                amax = std::max(amax, std::fabs(x[i]));
                qmax = std::max(qmax, std::abs((int)a.q[i]));
                if (std::fabs(a.q[i] * a.d[b] - x[i]) > 0.5001f * a.d[b])
                    report_failure("scalar", "act_blocks", strfmt("bs=%" PRId64, bs), "value off by more than d/2");
            }
            if (a.d[b] != amax / 127.0f || qmax != (amax > 0 ? 127 : 0))
                report_failure("scalar", "act_blocks", strfmt("bs=%" PRId64 " block %" PRId64, bs, b), "scale or range");
        }
        if (bs == QK_K)
            for (int64_t g = 0; g < K / 16; ++g) {
                int s = 0;
                for (int i = 0; i < 16; ++i) s += a.q[g * 16 + i];
                if (a.bsum[g] != s) report_failure("scalar", "act_blocks", "bs=256", "bsum");
            }
    }
    // Blocks the q8_0 formula cannot scale: subnormal absmax (1/d overflows to inf) still spans
    // ±127; a NaN or an infinity gives q = 0 and d = NaN, never a NaN converted to int8.
    for (const float amax : {1e-40f, 2e-39f, 3e-37f}) {
        std::vector<float> x((size_t)QK8_0);
        for (int64_t i = 0; i < QK8_0; ++i) x[(size_t)i] = amax * (float)(i - 16) / 16.0f;
        ActBlocks a;
        act_blocks_resize(a, 1, QK8_0, QK8_0);
        act_blocks_quantize_row(x.data(), a, 0);
        for (int64_t i = 0; i < QK8_0; ++i) {
            const float want = std::nearbyint((float)(i - 16) / 16.0f * 127.0f);
            if (std::fabs(a.q[(size_t)i] - want) > 1.0f) {
                report_failure("scalar", "act_blocks", strfmt("amax=%g", (double)amax),
                               strfmt("q[%" PRId64 "] = %d, want %g", i, a.q[(size_t)i], (double)want));
                break;
            }
        }
    }
    for (const float bad : {NAN, INFINITY, -INFINITY}) {
        std::vector<float> x((size_t)(2 * QK8_0), 1.0f);
        x[3] = bad;
        ActBlocks a;
        act_blocks_resize(a, 1, 2 * QK8_0, QK8_0);
        act_blocks_quantize_row(x.data(), a, 0);
        bool zeros = true;
        for (int64_t i = 0; i < QK8_0; ++i) zeros &= a.q[(size_t)i] == 0;
        if (!zeros || !std::isnan(a.d[0]) || a.d[1] != 1.0f / 127.0f || a.q[(size_t)QK8_0] != 127)
            report_failure("scalar", "act_blocks", strfmt("x[3]=%g", (double)bad),
                           strfmt("d %g %g, q[0..32) %s", (double)a.d[0], (double)a.d[1], zeros ? "zero" : "not zero"));
    }
}

void run_tests() {
    const std::vector<const QuantKernelSet*> sets = quant_kernels_available();
    std::printf("quant kernel sets:");
    for (const QuantKernelSet* s : sets) std::printf(" %s", s->isa);
    std::printf("\n");
    test_act_blocks();
    // awkward shapes: odd block counts (a lone last pair for the AVX-512 Q8_0/Q4_0 path), M not a
    // multiple of 16, sub-ranges, token counts around the tile of 4
    const struct { int64_t M, K, N, m0, m1; } q32[] = {
        {1, 32, 1, 0, 1}, {19, 96, 3, 0, 19}, {37, 160, 5, 3, 29}, {16, 2560, 1, 0, 16}, {9, 64, 9, 2, 9}};
    for (const uint32_t type : {TYPE_Q8_0, TYPE_Q4_0})
        for (const auto& c : q32) {
            test_qgemm_case(sets, type, c.M, c.K, c.N, c.m0, c.m1, false);
            test_qgemm_case(sets, type, c.M, c.K, c.N, c.m0, c.m1, true);
        }
    const struct { int64_t M, K, N, m0, m1; } k256[] = {
        {1, 256, 1, 0, 1}, {19, 768, 3, 0, 19}, {37, 512, 6, 5, 33}, {17, 2560, 1, 0, 17}, {5, 256, 9, 1, 4}};
    for (const auto& c : k256) {
        test_qgemm_case(sets, TYPE_Q6_K, c.M, c.K, c.N, c.m0, c.m1, false);
        test_qgemm_case(sets, TYPE_Q6_K, c.M, c.K, c.N, c.m0, c.m1, true);
        for (const uint32_t type : {TYPE_TQ1_0, TYPE_TQ2_0}) {
            const int64_t ldq = c.K + (c.N > 3 ? 128 : 0);
            test_tq_case(sets, type, c.M, c.K, c.N, c.m0, c.m1, ldq, false, false);
            test_tq_case(sets, type, c.M, c.K, c.N, c.m0, c.m1, ldq, false, true);
            test_tq_case(sets, type, c.M, c.K, c.N, c.m0, c.m1, ldq, true, false);
        }
    }
}

// ---- benchmark --------------------------------------------------------------------------------

// Runs fn(m0, m1) on nth threads over [0, M) split in multiples of 16 rows (as the engine does).
template <typename F>
void run_split(int nth, int64_t M, F&& fn) {
    std::vector<std::thread> th;
    const int64_t per = (M / nth + 15) / 16 * 16;
    for (int i = 1; i < nth; ++i) th.emplace_back([&, i] { fn(std::min(M, i * per), std::min(M, (i + 1) * per)); });
    fn(0, std::min(M, per));
    for (auto& t : th) t.join();
}

int run_bench() {
    const int64_t M = 128256, K = 2560;
    std::printf("Output layer GEMV (N=1), %" PRId64 " x %" PRId64 ", best of repeated calls; GB/s = weight bytes / time\n", M, K);
    std::printf("%-12s %-6s %8s %10s %10s %10s\n", "isa", "type", "threads", "MB", "time ms", "GB/s");
    std::vector<float> x((size_t)K);
    for (auto& v : x) v = rand_float(-1.0f, 1.0f);
    std::vector<float> y((size_t)M);
    {
        // a plain read loop over a buffer of the same size as the Q8_0 matrix: the ceiling
        std::vector<uint64_t> buf((size_t)(M * K / 32 * 34 / 8), 1);
        for (int nth : {1, 2}) {
            std::vector<uint64_t> sums(nth * 8);
            const double t = time_best([&] {
                run_split(nth, (int64_t)buf.size(), [&](int64_t b, int64_t e) {
                    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    for (int64_t i = b; i + 4 <= e; i += 4) {
                        s0 += buf[i];
                        s1 += buf[i + 1];
                        s2 += buf[i + 2];
                        s3 += buf[i + 3];
                    }
                    sums[(size_t)(b * nth / std::max<int64_t>(1, (int64_t)buf.size())) * 8] = s0 + s1 + s2 + s3;
                });
            }, 1.0);
            std::printf("%-12s %-6s %8d %10.1f %10.3f %10.2f\n", "-", "read", nth, buf.size() * 8 / 1e6, t * 1e3, buf.size() * 8 / t / 1e9);
        }
    }
    const QuantKernelSet& qs = quant_kernels();
    for (const uint32_t type : {TYPE_Q8_0, TYPE_Q6_K, TYPE_Q4_0}) {
        const std::vector<uint8_t> w = random_matrix(type, M, K, false, true);
        ActBlocks a;
        act_blocks_resize(a, 1, K, act_block_size(type));
        act_blocks_quantize_row(x.data(), a, 0);
        const qgemm_fn gemm = quant_gemm_for(qs, type);
        for (int nth : {1, 2}) {
            const double t = time_best([&] { run_split(nth, M, [&](int64_t m0, int64_t m1) { gemm(w.data(), K, a, y.data(), M, m0, m1); }); }, 1.0);
            std::printf("%-12s %-6s %8d %10.1f %10.3f %10.2f\n", qs.isa, type_traits(type)->name, nth, w.size() / 1e6, t * 1e3, w.size() / t / 1e9);
        }
    }
    {
        std::vector<uint16_t> w((size_t)(M * K));
        for (size_t i = 0; i < w.size(); ++i) w[i] = (uint16_t)(0x3000 + (i * 2654435761u >> 20 & 0x7ff));
        const KernelSet& ks = kernels();
        for (int nth : {1, 2}) {
            const double t = time_best([&] { run_split(nth, M, [&](int64_t m0, int64_t m1) { ks.f16_gemm(w.data(), K, x.data(), K, 1, y.data(), M, m0, m1); }); }, 1.0);
            std::printf("%-12s %-6s %8d %10.1f %10.3f %10.2f\n", ks.isa, "F16", nth, w.size() * 2 / 1e6, t * 1e3, w.size() * 2 / t / 1e9);
        }
    }

    std::printf("\nTernary GEMV (N=1) and GEMM (N=128), one thread; GB/s of weights, GMAC/s\n");
    std::printf("%-12s %-6s %8s %8s %6s %10s %10s %10s\n", "isa", "type", "M", "K", "N", "time ms", "GB/s", "GMAC/s");
    const struct { int64_t M, K; } shapes[] = {{6912, 2560}, {2560, 6912}};
    for (const QuantKernelSet* set : quant_kernels_available()) {
        if (set == &quant_kernels_ref()) continue;
        for (const auto& sh : shapes)
            for (const uint32_t type : {TYPE_TQ1_0, TYPE_TQ2_0}) {
                const std::vector<uint8_t> w = random_matrix(type, sh.M, sh.K, false, false);
                const tq_gemm_i32_fn g = type == TYPE_TQ1_0 ? set->tq1_0_gemm_i32 : set->tq2_0_gemm_i32;
                for (const int64_t N : {int64_t(1), int64_t(128)}) {
                    std::vector<int8_t> q((size_t)(N * sh.K));
                    for (auto& v : q) v = (int8_t)rand_int(-128, 127);
                    std::vector<int32_t> out((size_t)(N * sh.M));
                    const double t = time_best([&] { g(w.data(), sh.K, q.data(), sh.K, N, out.data(), sh.M, 0, sh.M); }, 0.5);
                    std::printf("%-12s %-6s %8" PRId64 " %8" PRId64 " %6" PRId64 " %10.3f %10.2f %10.2f\n", set->isa,
                                type_traits(type)->name, sh.M, sh.K, N, t * 1e3, w.size() / t / 1e9,
                                (double)sh.M * sh.K * N / t / 1e9);
                }
            }
    }
    return 0;
}

}  // namespace

// ---- drivers for the Python tests ---------------------------------------------------------------

std::vector<uint8_t> read_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("cannot open %s", path.c_str());
    std::vector<uint8_t> buf;
    uint8_t chunk[65536];
    size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) buf.insert(buf.end(), chunk, chunk + got);
    std::fclose(f);
    return buf;
}

void write_file(const std::string& path, const void* data, size_t n, const char* mode) {
    FILE* f = std::fopen(path.c_str(), mode);
    if (!f || std::fwrite(data, 1, n, f) != n) fail("cannot write %s", path.c_str());
    std::fclose(f);
}

uint32_t type_by_name(const std::string& name) {
    for (const uint32_t t : {TYPE_Q8_0, TYPE_Q4_0, TYPE_Q6_K, TYPE_TQ1_0, TYPE_TQ2_0, TYPE_I2_S})
        if (name == type_traits(t)->name) return t;
    fail("unknown type '%s' (Q8_0, Q4_0, Q6_K, TQ1_0, TQ2_0, I2_S)", name.c_str());
}

int run_dequantize(char** argv) {
    const uint32_t type = type_by_name(argv[0]);
    const int64_t K = std::stoll(argv[1]);
    const std::vector<uint8_t> w = read_file(argv[2]);
    const size_t rb = quant_row_bytes(type, K);
    if (w.size() % rb) fail("%s: %zu bytes is not a whole number of rows of %zu", argv[2], w.size(), rb);
    const int64_t rows = (int64_t)(w.size() / rb);
    std::vector<float> out((size_t)(rows * K));
    for (int64_t r = 0; r < rows; ++r) dequantize_row(type, w.data(), K, r, out.data() + r * K);
    write_file(argv[3], out.data(), out.size() * sizeof(float), "wb");
    return 0;
}

int run_gemm(char** argv) {
    const uint32_t type = type_by_name(argv[0]);
    const int64_t M = std::stoll(argv[1]), K = std::stoll(argv[2]), N = std::stoll(argv[3]);
    const std::vector<uint8_t> w = read_file(argv[4]), x = read_file(argv[5]);
    const std::string out = argv[6];
    if (w.size() != type_nbytes(type, K, M * K, "W"))
        fail("W has %zu bytes, %s [%lld, %lld] needs %zu", w.size(), argv[0], (long long)M, (long long)K,
             type_nbytes(type, K, M * K, "W"));
    const QuantKernelSet& qs = quant_kernels();
    if (type == TYPE_I2_S) {
        // rows padded to whole blocks: activations padded with zeros, as quantize_batch does
        const int64_t Kp = i2s_padded_k(K);
        std::vector<int8_t> q((size_t)(N * Kp), 0);
        for (int64_t n = 0; n < N; ++n) std::memcpy(&q[(size_t)(n * Kp)], x.data() + n * K, (size_t)K);
        std::vector<int32_t> y((size_t)(N * M), INT32_MIN);
        kernels().i2s_gemm(w.data(), Kp, q.data(), Kp, N, y.data(), M, 0, M);
        write_file(out, y.data(), y.size() * 4, "wb");
    } else if (type == TYPE_TQ1_0 || type == TYPE_TQ2_0) {
        const int8_t* q = (const int8_t*)x.data();
        std::vector<float> yf((size_t)(N * M), NAN);
        std::vector<int32_t> yi((size_t)(N * M), INT32_MIN);
        (type == TYPE_TQ1_0 ? qs.tq1_0_gemm_f32 : qs.tq2_0_gemm_f32)(w.data(), K, q, K, N, yf.data(), M, 0, M);
        (type == TYPE_TQ1_0 ? qs.tq1_0_gemm_i32 : qs.tq2_0_gemm_i32)(w.data(), K, q, K, N, yi.data(), M, 0, M);
        write_file(out, yf.data(), yf.size() * 4, "wb");
        write_file(out, yi.data(), yi.size() * 4, "ab");
    } else {
        ActBlocks a;
        act_blocks_resize(a, N, K, act_block_size(type));
        for (int64_t n = 0; n < N; ++n) act_blocks_quantize_row((const float*)x.data() + n * K, a, n);
        std::vector<float> y((size_t)(N * M), NAN);
        quant_gemm_for(qs, type)(w.data(), K, a, y.data(), M, 0, M);
        write_file(out, y.data(), y.size() * 4, "wb");
    }
    std::printf("%s\n", qs.isa);
    return 0;
}

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "--bench") return run_bench();
        if (mode == "--dequantize" && argc == 6) return run_dequantize(argv + 2);
        if (mode == "--gemm" && argc == 9) return run_gemm(argv + 2);
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    if (!mode.empty()) {
        std::fprintf(stderr, "error: unknown arguments starting with '%s'; use no argument, --bench, "
                     "--dequantize TYPE K IN OUT or --gemm TYPE M K N W X OUT\n", mode.c_str());
        return 2;
    }
    run_tests();
    if (g_failures) {
        std::printf("%d failure(s)\n", g_failures);
        return 1;
    }
    std::printf("all quant kernel tests passed\n");
    return 0;
}
