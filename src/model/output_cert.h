// Certified output: the logits of an exact (F16/F32) output matrix found through a compact
// block-quantized copy of it, with a proof per token that no row the copy ranked low can be among
// the exact top k.
//
// Per token x (the normed hidden state): L~ = compact · x, then for each row j a bound
//   |L~_j - L_j| <= b_j = ||x|| A_j + ||x - x_q|| B_j      (derivation in output_cert.cpp)
// where L_j is the logit the exact path computes (the F16 kernel, its own rounding included).
// Every row whose upper bound L~_j + b_j reaches the k-th largest lower bound L~_i - b_i is
// recomputed with the exact path's kernel, so it gets the bits the exact file gives; no other row
// can be among the exact top k (see output_certify).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/quants.h"
#include "model/linear.h"

namespace bitnet {

struct Context;
struct Model;

struct OutputCert {
    Linear compact;              // (n_vocab, n_embd) Q6_K / Q4_0 / Q8_0, data in `bytes`
    std::vector<uint8_t> bytes;
    std::vector<float> a, b;     // (n_vocab) the per-row coefficients of the bound, rounded up
    double build_seconds = 0.0;  // how long making the copy at load time took
};

// The compact type asked for by BITNET_OUTPUT_COMPACT (auto | off | q6_k | q4_0 | q8_0) for an
// exact output matrix with rows of k values in exact_bytes bytes; TYPE_F32 (0) stands for "none".
// auto: none below 32 MiB, else Q6_K when k is a multiple of 256, else Q4_0 (README: certified
// output). Throws bitnet::Error for an unknown name or a type whose blocks do not divide k.
uint32_t output_compact_type(int64_t k, size_t exact_bytes);

// Builds m.cert from m.output (F16 or F32) as `type`, on n_threads threads. Leaves m.cert empty
// (compact.data == nullptr) for type 0 or another output type.
void output_cert_build(Model& m, uint32_t type, int n_threads);

// Whether this context scores the output through the compact copy.
bool output_cert_active(const Context& ctx);

// Logits of `rows` tokens (normed hidden states xn, row stride n_embd) into out (rows, n_vocab):
// the compact copy's values, except that every row that can be among the exact top ctx.cert_k
// carries the exact path's value, bit for bit. With BITNET_CERT_CHECK=1 the exact logits are also
// computed in full and every bound and the top-k set are checked (a failure aborts).
void output_certified(Context& ctx, const float* xn, int rows, float* out);

}  // namespace bitnet
