// Float operations of the transformer that know nothing about models: RMSNorm, RoPE, softmax and
// causal attention over a KV cache. Written to give PyTorch's float32 bits (same formulas, same
// order of additions, the same exp; see ops.cpp for each op and for what still differs), because
// their outputs feed int8 quantizers where one ulp can flip a value.
#pragma once

#include <cstdint>

namespace bitnet {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]   (out may alias x), the sum in torch's order
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out);

// Rotary embedding, NEOX layout (pairs i and i + d/2 of each head, as Hugging Face's
// rotate_half), for n_heads heads of size head_dim at position pos, in place.
// inv_freq[i] = 1 / theta^(2i/d), precomputed by rope_inv_freq.
void rope_inv_freq(float theta, int head_dim, float* inv_freq);
// cs[i] = cos(pos * inv_freq[i]), cs[half + i] = sin(pos * inv_freq[i]) for i < half = head_dim/2:
// computed once per token and shared by its Q and K in every layer.
void rope_angles(int head_dim, int pos, const float* inv_freq, float* cs);
// Hugging Face's rotate_half layout: pairs (i, i + half) of each head.
void rope_neox(float* x, int n_heads, int head_dim, const float* cs);
// llama.cpp's NORM layout: pairs (2i, 2i+1) of each head. The converter permuted the rows of Wq
// and Wk of `llama` checkpoints so that this equals rotate_half on the original rows (same
// angles, same products, so the same float results).
void rope_norm(float* x, int n_heads, int head_dim, const float* cs);

// Causal attention of one query head against cached keys/values of positions [0, n_kv):
//   out = softmax(q·K^T * scale) V       K, V rows have stride `stride` floats.
// scratch needs n_kv floats. n_keys: the number of keys of the whole batch this row belongs to
// (n_past + n_tokens; 0 or less than n_kv means n_kv). The reference multiplies P·V for all rows
// at once, and how its BLAS splits the sum over keys depends on that length, not on the row.
void attention_head(const float* q, const float* k, const float* v, int64_t stride, int n_kv,
                    int head_dim, float scale, float* scratch, float* out, int n_keys = 0);

}  // namespace bitnet
