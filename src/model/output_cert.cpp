// Certified output (see output_cert.h): the compact copy, its per-row bound, and the per-token
// choice and exact rescoring of the candidates.
//
// The bound. For row j (exact weights w, compact weights w_q as the compact kernel multiplies
// them, K = n_embd) and a token x, the compact kernel quantizes x per block (x_q = d_b * q, the
// real numbers its integer products use) and returns L~ = w_q·x_q + r_c; the exact path returns
// L = w·x + r_e. Summing n terms in float32 in any order, each term through at most n roundings,
// is off by at most gamma_n = n u / (1 - n u) times the sum of the terms' magnitudes (u = 2^-24,
// Higham, Accuracy and Stability, ch. 3-4), and by Cauchy-Schwarz Σ|w_k x_k| <= ||w|| ||x||:
//   |r_e| <= gamma ||w|| ||x||,   |r_c| <= gamma ||w_q|| ||x_q||,   ||x_q|| <= ||x|| + delta
// with delta = ||x - x_q||, n = K + 16 covering both kernels (the exact one's K products and
// sums; the compact one's block scale products, int-to-float conversions and block sums). Then
//   L~ - L = w_q·(x_q - x) + (w_q - w)·x + r_c - r_e
//   |L~ - L| <= ||x|| (e + gamma (||w|| + ||w_q||)) + delta ||w_q|| (1 + gamma) = ||x|| A + delta B
// with e = ||w_q - w||. A and B are computed per row at load (in double, then rounded up to
// float); ||x|| and delta per token (in double, rounded up). What float rounding the bound's own
// evaluation adds is covered by the slack of bound_of().
//
// Why the candidates suffice: let T be the k-th largest lower bound L~_i - b_i. The k rows that
// have those lower bounds all have exact logits >= T. A row j with L~_j + b_j < T has L_j < T, so
// k rows are strictly above it: it is in no exact top k, whatever the tie rule. Every other row is
// rescored exactly, and its logit in the returned row is then the exact path's bits; a row not
// rescored keeps L~_j < T, below k exact values, so it cannot enter the top k of the returned row
// either: top-k of the returned row = exact top-k with exact logits (greedy: k = 1).
#include "model/output_cert.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "model/model.h"
#include "util/common.h"

namespace bitnet {

namespace {

constexpr double kUnit = 1.0 / (1 << 24);  // float32 unit roundoff

// Below this size the exact output matrix stays in the caches of a few cores, and reading a compact
// copy instead saves no time (README: certified output, measured on the shipped model): auto
// leaves such models on the exact path.
constexpr size_t kAutoMinBytes = size_t(32) << 20;

double gamma_for(int64_t k) {
    const double n = (double)k + 16;
    return n * kUnit / (1.0 - n * kUnit);
}

// The smallest float >= v (v finite and >= 0), +inf for anything else: a bound must never shrink.
float round_up(double v) {
    if (!(v >= 0.0) || v > (double)std::numeric_limits<float>::max()) return INFINITY;
    const float f = (float)v;
    return (double)f >= v ? f : std::nextafter(f, INFINITY);
}

// ||x||_2 of k floats, rounded up to a float (the double sum's own error, k * 2^-53 relative, is
// far inside the 1e-9 margin).
float norm_up(const float* x, int64_t k) {
    double s = 0.0;
    for (int64_t i = 0; i < k; ++i) s += (double)x[i] * x[i];
    return round_up(std::sqrt(s) * (1.0 + 1e-9));
}

// The bound of a row in float: b = (X A + delta B) plus slack for the three float operations here
// (2^-20 of b) and for rounding L~ +- b afterwards (2^-22 of |L~|, i.e. 4 u). A non-finite bound
// (a broken row, or a hidden state that overflowed) comes out +inf or NaN: the callers' comparisons
// are written so that either makes the row a candidate.
inline float bound_of(float X, float delta, float a, float b, float approx) {
    return (X * a + delta * b) * (1.0f + 0x1p-20f) + 0x1p-22f * std::fabs(approx) + 1e-37f;
}

bool check_env() {
    static const bool on = [] {
        const char* v = std::getenv("BITNET_CERT_CHECK");
        return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
    }();
    return on;
}

// ||x - x_q||_2 for the compact kernel's quantization of x (act_blocks_quantize_row), rounded up.
float act_quant_error(const float* x, int64_t k, int64_t bs, ActBlocks& a) {
    act_blocks_resize(a, 1, k, bs);
    act_blocks_quantize_row(x, a, 0);
    double s = 0.0;
    for (int64_t i = 0; i < k; ++i) {
        const double diff = (double)a.d[i / bs] * a.q[i] - x[i];  // exact: 24 x 8 bits in a double
        s += diff * diff;
    }
    return round_up(std::sqrt(s) * (1.0 + 1e-9));
}

// One token's exact logit of row m through the exact path's own kernel (its bits do not depend on
// the rows or tokens it is computed with, see linear.cpp).
void exact_row(const Linear& out, const float* x, float* logits, int64_t m) {
    const KernelSet& ks = kernels();
    if (out.type == TYPE_F16)
        ks.f16_gemm((const uint16_t*)out.data, out.in, x, out.in, 1, logits, out.out, m, m + 1);
    else
        ks.f32_gemm((const float*)out.data, out.in, x, out.in, 1, logits, out.out, m, m + 1);
}

}  // namespace

uint32_t output_compact_type(int64_t k, size_t exact_bytes) {
    const char* env = std::getenv("BITNET_OUTPUT_COMPACT");
    const std::string want = env && *env ? env : "auto";
    uint32_t type;
    if (want == "off") return 0;
    if (want == "auto") {
        if (exact_bytes < kAutoMinBytes) return 0;
        return k % QK_K == 0 ? TYPE_Q6_K : k % QK8_0 == 0 ? TYPE_Q4_0 : 0;
    }
    if (want == "q6_k") type = TYPE_Q6_K;
    else if (want == "q4_0") type = TYPE_Q4_0;
    else if (want == "q8_0") type = TYPE_Q8_0;
    else
        fail("BITNET_OUTPUT_COMPACT=%s is not a compact output type: use auto, off, q6_k, q4_0 or "
             "q8_0", want.c_str());
    if (k % act_block_size(type) != 0)
        fail("BITNET_OUTPUT_COMPACT=%s needs rows that are a multiple of %lld values, the output "
             "matrix has %lld: use auto, q4_0 or q8_0",
             want.c_str(), (long long)act_block_size(type), (long long)k);
    return type;
}

void output_cert_build(Model& m, uint32_t type, int n_threads) {
    OutputCert& c = m.cert;
    const Linear& w = m.output;
    if (type == 0 || (w.type != TYPE_F16 && w.type != TYPE_F32)) return;
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t K = w.in, M = w.out;
    const size_t row_bytes = quant_row_bytes(type, K);
    c.bytes.resize(row_bytes * (size_t)M);
    c.a.resize(M);
    c.b.resize(M);
    const double gamma = gamma_for(K);
    ThreadPool pool(n_threads);
    pool.for_range(M, 1, 256, [&](int64_t m0, int64_t m1, int) {
        std::vector<float> exact(K), approx(K);
        for (int64_t r = m0; r < m1; ++r) {
            dequantize_row(w.type, w.data, K, r, exact.data());
            uint8_t* q = c.bytes.data() + (size_t)r * row_bytes;
            quantize_weight_row(type, exact.data(), K, q);
            dequantize_row(type, q, K, 0, approx.data());
            double e2 = 0.0, n2 = 0.0, q2 = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                const double d = (double)approx[k] - exact[k];
                e2 += d * d;
                n2 += (double)exact[k] * exact[k];
                q2 += (double)approx[k] * approx[k];
            }
            // The float dequantizer rounds d * scale * q once or twice (2 u of each value): what
            // the kernel multiplies differs from `approx` by at most 2 u ||w_q||, added to e and to
            // ||w_q||.
            const double qn = std::sqrt(q2) * (1.0 + 4 * kUnit), e = std::sqrt(e2) + 4 * kUnit * qn;
            const double a = e + gamma * (std::sqrt(n2) + qn), b = qn * (1.0 + gamma);
            c.a[r] = round_up(a * (1.0 + 1e-9));
            c.b[r] = round_up(b * (1.0 + 1e-9));
        }
    });
    c.compact = w;
    c.compact.t = nullptr;
    c.compact.type = type;
    c.compact.data = c.bytes.data();
    c.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool output_cert_active(const Context& ctx) {
    return ctx.model->cert.compact.data != nullptr && !ctx.exact_output;
}

void output_certified(Context& ctx, const float* xn, int rows, float* out) {
    const Model& m = *ctx.model;
    const OutputCert& c = m.cert;
    const int64_t K = m.output.in, M = m.output.out;
    const int64_t k_top = std::min<int64_t>(std::max(ctx.cert_k, 1), M);
    float_matmul(ctx, c.compact, xn, rows, out);
    const int64_t bs = act_block_size(c.compact.type);
    ctx.cert_lower.resize(M);
    ctx.cert_exact.resize(check_env() ? M : 0);
    for (int r = 0; r < rows; ++r) {
        const float* x = xn + r * K;
        float* L = out + r * M;
        const float X = norm_up(x, K);
        const float delta = act_quant_error(x, K, bs, ctx.cert_act);
        // Pass 1: the k-th largest lower bound. NaN lower bounds never count (comparisons false).
        float T = -INFINITY;
        float* lower = ctx.cert_lower.data();
        if (k_top == 1) {
            for (int64_t j = 0; j < M; ++j) {
                const float lo = L[j] - bound_of(X, delta, c.a[j], c.b[j], L[j]);
                if (lo > T) T = lo;
            }
        } else {
            for (int64_t j = 0; j < M; ++j) {
                const float lo = L[j] - bound_of(X, delta, c.a[j], c.b[j], L[j]);
                lower[j] = std::isnan(lo) ? -INFINITY : lo;
            }
            std::nth_element(lower, lower + (k_top - 1), lower + M, std::greater<float>());
            T = lower[k_top - 1];
        }
        // Pass 2: the candidates, every row whose upper bound is not below T (NaN included).
        std::vector<int32_t>& cand = ctx.cert_cand;
        cand.clear();
        for (int64_t j = 0; j < M; ++j)
            if (!(L[j] + bound_of(X, delta, c.a[j], c.b[j], L[j]) < T)) cand.push_back((int32_t)j);
        if (check_env()) {
            // Every bound, before the candidates overwrite their approximations.
            float_matmul(ctx, m.output, x, 1, ctx.cert_exact.data());
            for (int64_t j = 0; j < M; ++j) {
                const float b = bound_of(X, delta, c.a[j], c.b[j], L[j]);
                if (!(std::fabs(L[j] - ctx.cert_exact[j]) <= b))
                    fail("certified output: row %lld: compact %.9g, exact %.9g, bound %.9g violated",
                         (long long)j, (double)L[j], (double)ctx.cert_exact[j], (double)b);
            }
        }
        ctx.pool->for_range((int64_t)cand.size(), 1, 32, [&](int64_t i0, int64_t i1, int) {
            for (int64_t i = i0; i < i1; ++i) exact_row(m.output, x, L, cand[i]);
        });
        ctx.cert_tokens += 1;
        ctx.cert_rescored += (int64_t)cand.size();
        if (check_env()) {
            // The exact top k are all candidates, with the exact path's bits.
            std::vector<float> sorted(ctx.cert_exact);
            std::nth_element(sorted.begin(), sorted.begin() + (k_top - 1), sorted.end(),
                             std::greater<float>());
            const float kth = sorted[k_top - 1];
            size_t ci = 0;
            for (int64_t j = 0; j < M; ++j) {
                const bool is_cand = ci < cand.size() && cand[ci] == j;
                if (is_cand) {
                    ++ci;
                    if (std::memcmp(&L[j], &ctx.cert_exact[j], sizeof(float)) != 0)
                        fail("certified output: row %lld rescored to %.9g, the exact path gives %.9g",
                             (long long)j, (double)L[j], (double)ctx.cert_exact[j]);
                } else if (!(ctx.cert_exact[j] < kth)) {
                    fail("certified output: row %lld (exact %.9g) is in the exact top %lld but was "
                         "not rescored", (long long)j, (double)ctx.cert_exact[j], (long long)k_top);
                }
            }
        }
    }
}

}  // namespace bitnet
