// Kernels of the tiled attention (the flash-attention scheme): per chunk of keys, the partial
// softmax of a few query rows, and the loaders that bring a chunk of the KV cache into the f32
// layout those kernels read. The tiling, the threads and the merge of the partials live in
// model/attention.cpp; this family only does arithmetic.
//
// What makes a token's result independent of how it is batched (alone, in a prompt of 512, or
// among drafted tokens being verified): keys are cut into chunks at fixed absolute positions
// (multiples of ATTN_CHUNK), a row's partial over a chunk depends only on that row, the chunk and
// how many of its keys the row sees, and the partials are merged in chunk order by one function.
// Which other rows share a call, how many keys a call loads, which thread runs it: none of it
// changes a bit. Every kernel here keeps that contract, on every ISA.
#pragma once

#include <cstdint>
#include <vector>

namespace bitnet {

constexpr int ATTN_CHUNK = 64;  // keys per chunk; also K's block of positions in the cache
constexpr int ATTN_ROWS = 16;   // most query rows per kernel call

// K layouts in the KV cache, per (layer, sequence, KV head):
//   blocked (F32, F16): chunk b of keys is a [head_dim][ATTN_CHUNK] array (key t of the chunk at
//     column t), so the score kernel reads 8 or 16 keys of one dimension as one vector;
//   rows (Q8_0, and F32 in exact mode): key t is row t, as llama.cpp stores it.
// V is always rows. Row and block sizes: kv_row_bytes, kv_head_bytes in model/attention.cpp.

// Loads keys [0, n) of one chunk into kt, [head_dim][ATTN_CHUNK] floats; columns n up to the next
// multiple of 16 are written (as 0 where no key is loaded) so that kernels may read whole vectors.
//   F16 blocked: src is the chunk's [head_dim][ATTN_CHUNK] halves.
//   Q8_0 rows:   src is key 0's row, rows `row_bytes` apart.
using attn_load_k_fn = void (*)(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* kt);
// Loads value rows [0, n) into v, [n][head_dim] floats.
using attn_load_v_fn = void (*)(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* v);

// The partial softmax of R <= ATTN_ROWS query rows against one chunk of n <= ATTN_CHUNK keys:
//   q: R rows of head_dim floats, already multiplied by the softmax scale;
//   valid[r] in [1, n]: row r sees keys [0, valid[r]) of the chunk;
//   kt: the chunk's keys as attn_load_k_fn writes them; v: n value rows of head_dim floats;
//   out, per row: m[r] = max_t s_t, l[r] = Σ_t e^(s_t - m[r]), o[r*head_dim + d] = Σ_t e^(s_t - m[r]) v_t[d]
//   with s_t = q_r · k_t and t < valid[r]. Row r's results depend on q_r, valid[r] and the keys
//   and values it sees only. head_dim is a multiple of 16.
using attn_chunk_fn = void (*)(const float* q, int R, const int* valid, int n, const float* kt,
                               const float* v, int head_dim, float* m, float* l, float* o);

struct AttnKernelSet {
    const char* isa;  // the names of KernelSet::isa
    attn_chunk_fn chunk;
    attn_load_k_fn load_k_f16, load_k_q8_0;
    attn_load_v_fn load_v_f16, load_v_q8_0;
};

const AttnKernelSet& attn_kernels_ref();
#if defined(BITNET_HAVE_X86)
const AttnKernelSet& attn_kernels_avx2();
const AttnKernelSet& attn_kernels_avx512();  // bit-identical with the AVX2 set
#endif
#if defined(BITNET_HAVE_ARM)
const AttnKernelSet& attn_kernels_neon();
#endif
// Every set compiled in and supported here, reference first; the one for the ISA of kernels()
// (or the best below it: SDOT CPUs run the NEON set; see attn_ref.cpp).
std::vector<const AttnKernelSet*> attn_kernels_available();
const AttnKernelSet& attn_kernels();

// Quantizes k values (a multiple of 32) to Q8_0 blocks (34 bytes: fp16 d, 32 int8), as
// llama.cpp's reference quantizer does: d = absmax / 127, q = round(x / d).
void kv_quantize_q8_0(const float* x, int64_t k, uint8_t* out);

}  // namespace bitnet
