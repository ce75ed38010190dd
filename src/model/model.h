// Model: hyperparameters and tensors bound from a GGUF file, and the inference context (KV cache,
// scratch buffers, thread pool) that runs its forward pass.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/threadpool.h"

namespace bitnet {

struct HParams {
    std::string arch;
    int n_vocab = 0;
    int n_ctx_train = 0;
    int n_embd = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    int n_ff = 0;
    float norm_eps = 1e-5f;
    float rope_theta = 10000.0f;
};

// A weight matrix W[out][in] stored in the file (ne = [in, out]).
struct Linear {
    const GGUFTensor* t = nullptr;
    uint32_t type = 0;
    int64_t in = 0, out = 0;
    const uint8_t* data = nullptr;
    float scale = 1.0f;    // I2_S: the per-tensor magnitude stored after the packed codes
    float divisor = 1.0f;  // I2_S: what the reference divides by (1/scale, or exact from the file)
};

struct Layer {
    std::vector<float> attn_norm;      // (n_embd)
    Linear wq, wk, wv, wo;             // (n_head*hd, n_embd), (n_kv*hd, n_embd) x2, (n_embd, n_head*hd)
    std::vector<float> attn_sub_norm;  // (n_head*hd)
    std::vector<float> ffn_norm;       // (n_embd)
    Linear gate, up, down;             // (n_ff, n_embd) x2, (n_embd, n_ff)
    std::vector<float> ffn_sub_norm;   // (n_ff)
};

struct Model {
    std::unique_ptr<GGUFFile> file;
    HParams hp;
    Linear tok_embd;  // (n_vocab, n_embd), rows read one at a time
    Linear output;    // (n_vocab, n_embd): token_embd itself when tied
    std::vector<float> output_norm;  // (n_embd)
    std::vector<Layer> layers;
    std::unique_ptr<Tokenizer> tokenizer;
    std::string desc;
    uint64_t n_params = 0;
    uint64_t n_bytes = 0;
};

// Loads and validates a model. Throws bitnet::Error naming the file and the problem (unknown
// architecture, missing tensor, wrong shape, unsupported tensor type).
std::unique_ptr<Model> model_load(const std::string& path);

// Activations of a batch, quantized per token to int8 for the ternary matmuls.
struct QuantBatch {
    std::vector<int8_t> q;       // (n, k)
    std::vector<float> scale;    // (n)   127 / absmax
    std::vector<int32_t> qsum;   // (n)
    int64_t n = 0, k = 0;
};

struct Context {
    Model* model = nullptr;
    int n_ctx = 0;
    int n_batch = 0;
    int n_past = 0;
    std::unique_ptr<ThreadPool> pool;

    std::vector<float> k_cache, v_cache;  // (n_layer, n_ctx, n_head_kv*head_dim)
    std::vector<float> inv_freq;          // (head_dim/2)

    // scratch for one batch of up to n_batch tokens
    std::vector<float> x, xn, q, k, v, att, ffa, ffb;
    std::vector<int32_t> acc;             // (n_batch, max(out))
    std::vector<float> deq;               // (n_batch, max(in)) float linears: dequantized inputs
    std::vector<float> scores;            // (n_threads, n_ctx)
    QuantBatch qa, qb;

    std::vector<float> logits;            // (n_logits, n_vocab)
    int n_logits = 0;                     // rows in `logits` from the last decode
    int logits_first = 0;                 // batch index of logits row 0 (n - 1 when only the last)
};

std::unique_ptr<Context> context_new(Model* model, int n_ctx, int n_threads, int n_batch);

// Runs tokens[0..n) (n <= n_batch) at positions n_past.. and appends them to the cache.
// Logits of every token (logits_all) or of the last one are left in ctx.logits.
void forward_bitnet_b158(Context& ctx, const int32_t* tokens, int n, bool logits_all);

// out(n, lin.out) = BitLinear(lin)(x) for activations already quantized in qb.
void linear_forward(Context& ctx, const Linear& lin, const QuantBatch& qb, float* out);
// Quantizes n rows of x (stride k) into qb.
void quantize_batch(Context& ctx, const float* x, int64_t n, int64_t k, QuantBatch& qb);
// out(n, lin.out) = x · W^T in float, for the F32/F16 embedding/output matrix.
void float_matmul(Context& ctx, const Linear& lin, const float* x, int64_t n, float* out);

}  // namespace bitnet
