// The KV cache and the attention step of the forward pass.
//
// Two attention paths, chosen per context:
//   fast (default): tiled attention with an online softmax (kernels/attn.h) over chunks of
//     ATTN_CHUNK keys, no n x n score matrix, K/V in f32, f16 or q8_0. Prompts run in tiles of up
//     to ATTN_ROWS query rows (the heads that share a KV head, several positions), parallel over
//     tiles; a few tokens over a long cache (generation, verification of drafted tokens) run
//     parallel over chunks of keys, and the chunks' partial softmaxes are merged afterwards. Both
//     ways make the same operations on every row, so a token's result does not depend on the
//     batch it is evaluated in, nor on the thread count.
//   exact: torch's summation order (ops.cpp attention_head), bit-exact with transformers'
//     eager attention in float32; needs f32 K and V. The reference mode of the lossless tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bitnet {

struct Context;
struct Model;
struct AttnKernelSet;

struct KvCache {
    uint32_t type_k = 0, type_v = 0;  // TYPE_F32, TYPE_F16 or TYPE_Q8_0
    bool exact = false;               // the exact path: K and V f32 rows
    bool k_blocked = false;           // K in [head_dim][ATTN_CHUNK] blocks (fast path, f32/f16)
    int n_pos = 0;                    // positions per head: n_ctx rounded up to ATTN_CHUNK
    size_t k_row_bytes = 0, v_row_bytes = 0;    // one position of one head (K rows only)
    size_t k_head_bytes = 0, v_head_bytes = 0;  // one (layer, sequence, KV head)
    std::vector<uint8_t> k, v;        // (n_layer, n_seq, n_head_kv) heads of those sizes
    const AttnKernelSet* kernels = nullptr;
};

// Query rows of a batch grouped by the keys they read: one group per (sequence, KV head), its
// rows (token, head of that KV head) in increasing position, so n_kv never decreases.
struct AttnRow {
    int32_t off;   // offset of the row's q in ctx.q and of its output in ctx.att
    int32_t n_kv;  // keys it attends to: position + 1
};
struct AttnGroup {
    int32_t head;       // seq * n_head_kv + KV head: which head of each layer's cache
    int32_t row0, n_rows;
    int32_t n_kv_max;
};
// How attention_layer splits a batch among threads, the same for every layer (attention_prepare).
struct AttnPlan {
    bool by_chunks = false;   // split by chunks of keys (a few tokens), else by tiles of rows
    int64_t chunk_units = 0;  // (group, chunk) pairs
    int max_chunks = 0;       // most chunks of a group
    size_t stride = 0;        // floats of one partial: m, l, o[head_dim]
};

// Sizes and allocates ctx.kv for ctx.n_seq sequences of ctx.n_ctx positions. Throws bitnet::Error
// for an unsupported type, a head size the type cannot hold, the exact path with a quantized
// cache, a size that overflows, or memory that cannot be had.
void kv_cache_init(Context& ctx, uint32_t type_k, uint32_t type_v, bool exact);

// Writes the keys and values (n_head_kv * head_dim floats each) of one token at `pos` of
// sequence `seq` in layer `layer`.
void kv_store(Context& ctx, int layer, int seq, int pos, const float* k, const float* v);

// Groups the batch's rows and plans their split for attention_layer (once per batch, every layer
// uses them).
void attention_prepare(Context& ctx, const int32_t* seq_ids, const int32_t* positions, int n);

// ctx.att = softmax(q K^T / sqrt(head_dim)) V for every row of the batch, layer `layer`.
void attention_layer(Context& ctx, int layer, const int32_t* seq_ids, const int32_t* positions,
                     int n);

}  // namespace bitnet
