// Model: hyperparameters and tensors bound from a GGUF file, and the inference context (KV cache,
// scratch buffers, thread pool) that runs its forward pass.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/attention.h"
#include "model/linear.h"
#include "model/output_cert.h"
#include "tokenizer/tokenizer.h"
#include "util/threadpool.h"

namespace bitnet {

// How an architecture's blocks differ, resolved from the GGUF at load time (see model.cpp).
enum class FfnAct { SILU, RELU2 };  // gated FFN: act(gate)·up with SiLU (Llama) or relu² (2B4T)
enum class RopeType { NORM, NEOX };
// How an embedding model pools its tokens' final hidden states: llama.cpp's llama_pooling_type
// numbers, as `<arch>.pooling_type` stores them (NONE: not an embedding model).
enum class Pooling { NONE = 0, MEAN = 1, CLS = 2, LAST = 3 }; // NORM: adjacent pairs (Q/K rows permuted by the converter,
                                    // llama.cpp's "llama"); NEOX: halves (Hugging Face rotate_half)

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
    FfnAct act = FfnAct::SILU;
    RopeType rope = RopeType::NEOX;
    bool sub_norms = false;  // attn_sub_norm before Wo, ffn_sub_norm before Wdown (BitNet archs)
    bool norm_in = false;    // an RMSNorm on each projection's input (BitLinear use_rms_norm, qwen3)
    bool qk_norm = false;    // per-head RMSNorm on q and k before RoPE (qwen3)
    Pooling pooling = Pooling::NONE;
};

// One projection of a block: the weight matrix and llama.cpp's optional per-tensor output scale
// (tensor '<name>.scale' of its "bitnet" architecture; 1 when absent).
struct Proj {
    Linear w;
    float scale = 1.0f;
};

struct Layer {
    std::vector<float> attn_norm;      // (n_embd)
    Proj wq, wk, wv, wo;               // (n_head*hd, n_embd), (n_kv*hd, n_embd) x2, (n_embd, n_head*hd)
    std::vector<float> attn_sub_norm;  // (n_head*hd), empty without sub-norms
    std::vector<float> ffn_norm;       // (n_embd)
    Proj gate, up, down;               // (n_ff, n_embd) x2, (n_embd, n_ff)
    std::vector<float> ffn_sub_norm;   // (n_ff), empty without sub-norms
    // BitLinear input norms (empty without norm_in): q/k/v/gate/up (n_embd), o (n_head*hd), down (n_ff)
    std::vector<float> q_in, k_in, v_in, o_in, gate_in, up_in, down_in;
    std::vector<float> q_norm, k_norm;  // (hd) per-head norms, empty without qk_norm
};

struct Model {
    std::unique_ptr<GGUFFile> file;
    HParams hp;
    Linear tok_embd;  // (n_vocab, n_embd), rows read one at a time
    Linear output;    // (n_vocab, n_embd): token_embd itself when tied
    std::vector<float> output_norm;  // (n_embd)
    OutputCert cert;  // compact copy of an exact output matrix, empty when not made (output_cert.h)
    std::vector<Layer> layers;
    std::unique_ptr<Tokenizer> tokenizer;
    std::string desc;
    uint64_t n_params = 0;
    uint64_t n_bytes = 0;
};

// Loads and validates a model. use_mmap: map the file, or read it into memory (see
// GGUFFile::open). Throws bitnet::Error naming the file and the problem (unknown architecture,
// missing tensor, wrong shape, unsupported tensor type).
std::unique_ptr<Model> model_load(const std::string& path, bool use_mmap = true);

// An inference context: n_seq independent sequences ("slots"), each with its own KV cache region
// of n_ctx positions and its own length, and the scratch of one forward pass over a batch of up
// to n_batch tokens drawn from any of them.
constexpr int kDefaultCtxMax = 4096;

struct Context {
    Model* model = nullptr;
    int n_ctx = 0;    // positions per sequence
    int n_batch = 0;  // most tokens per forward pass
    int n_seq = 1;    // sequence slots
    std::unique_ptr<ThreadPool> pool;

    KvCache kv;                           // (n_layer, n_seq, n_head_kv) heads, see attention.h
    std::vector<int> seq_len;             // (n_seq) positions cached per sequence
    std::vector<float> inv_freq;          // (head_dim/2)
    std::vector<float> rope_cs;           // (n_batch, head_dim): each batch token's cos | sin (rope_angles)

    // scratch for one batch of up to n_batch tokens
    std::vector<float> x, xn, q, k, v, att, ffa, ffb;
    std::vector<float> xin;               // (n_batch, max(in)) a projection's own input norm (norm_in)
    // Embeddings mode: when set, forward_batch writes output_norm(h) of each token with want[i]
    // to embd_out + (first_index + i) * n_embd instead of computing logits (see embed.h).
    float* embd_out = nullptr;
    std::vector<int32_t> acc;             // (n_batch, max(out))
    std::vector<float> deq;               // (n_batch, max(in)) float linears: dequantized inputs
    std::vector<float> scores;            // (n_threads, n_ctx) exact attention's score rows
    std::vector<AttnRow> attn_rows;       // fast attention: the batch's rows, by group
    std::vector<AttnGroup> attn_groups;
    std::vector<int32_t> attn_seq_order;  // (n_batch) sequences in order of first appearance
    std::vector<int64_t> attn_tiles;      // group << 32 | first row, in order of claiming
    AttnPlan attn_plan;
    std::vector<float> attn_scratch;      // (n_threads, per-thread scratch of the tiles)
    std::vector<float> attn_partials;     // (rows, chunks, head_dim + 2) split-by-keys partials
    std::vector<int32_t> b_seq, b_pos;    // (n_batch) batch the C API builds for one sequence
    std::vector<int8_t> b_want;           // (n_batch) logits flags the C API fills in
    std::vector<int32_t> b_keys;          // (n_batch) keys of the token's sequence after the batch
    std::vector<int32_t> b_rows;          // (n_batch) batch indexes of the logits rows
    std::vector<int32_t> seq_end;         // (n_seq) per-sequence length while a batch is checked
    QuantBatch qa, qb;

    // Logits kept by the last decode call (logits_reset, then forward_batch appends, chunk by
    // chunk): row r belongs to token logits_tok[r] of the call, in increasing order.
    std::vector<float> logits;            // (n_logits, n_vocab)
    std::vector<int32_t> logits_tok;      // (n_logits)
    int n_logits = 0;
    int n_decoded = 0;                    // tokens in the last decode call

    // Certified output (output_cert.h): off with exact_output; cert_k rows of the top are exact.
    bool exact_output = false;
    int cert_k = 1;
    int64_t cert_tokens = 0, cert_rescored = 0;  // tokens scored through the compact copy, rows rescored
    std::vector<float> cert_lower;        // (n_vocab) lower bounds, for the k-th largest
    std::vector<float> cert_exact;        // (n_vocab) BITNET_CERT_CHECK's full exact logits
    std::vector<int32_t> cert_cand;       // candidates of one token, increasing
    ActBlocks cert_act;                   // one token's activations as the compact kernel quantizes them
};

// n_ctx 0: the model's training context, at most kDefaultCtxMax (a KV cache of 128k positions
// is tens of GB: the user asks for that with an explicit size). n_seq: sequence slots (0 means 1); type_k/type_v: KV cache types (TYPE_F32, TYPE_F16,
// TYPE_Q8_0); exact: torch-order attention (needs f32 K and V), see attention.h. Throws
// bitnet::Error for sizes out of range or a cache that cannot be made.
std::unique_ptr<Context> context_new(Model* model, int n_ctx, int n_threads, int n_batch,
                                     int n_seq = 1, uint32_t type_k = 0, uint32_t type_v = 0,
                                     bool exact = false);

// Checks a batch against the context without changing it: every seq id in [0, n_seq), every
// token in the vocabulary, and the positions of each sequence contiguous from its current length
// (the first token of sequence s at seq_len[s], the next one of s at +1, ...) and below n_ctx.
// Throws bitnet::Error naming the first offending token and the way out.
void batch_check(Context& ctx, const int32_t* tokens, const int32_t* seq_ids,
                 const int32_t* positions, int n);

// One forward pass over a checked batch of n <= n_batch tokens of any sequences: token i of
// sequence seq_ids[i] at position positions[i]. Every matmul runs once over the whole batch;
// each token's K/V go to its sequence's slot, and it attends to that slot's positions
// [0, positions[i]] (tokens of the same sequence in the batch causally). Appends the logits of
// the tokens with want[i] != 0 to ctx.logits (logits_tok = first_index + i) and advances each
// sequence's length. One transformer for every architecture, steered by the HParams resolved at
// load (activation, sub-norms, RoPE). A token's result does not depend on the other sequences in
// the batch: the ternary products are exact integers, the float ops run per token, and
// attention's summation order depends only on the token's own sequence (attention_head's n_keys).
void forward_batch(Context& ctx, const int32_t* tokens, const int32_t* seq_ids,
                   const int32_t* positions, const int8_t* want, int n, int first_index = 0);

// Forgets the logits of the previous decode call; the next one has n tokens.
void logits_reset(Context& ctx, int n);

// Quantizes n rows of x (stride k) into qb.
void quantize_batch(Context& ctx, const float* x, int64_t n, int64_t k, QuantBatch& qb);
// out(n, lin.out) = x · W^T in float, for the F32/F16 embedding/output matrix.
void float_matmul(Context& ctx, const Linear& lin, const float* x, int64_t n, float* out);

}  // namespace bitnet
