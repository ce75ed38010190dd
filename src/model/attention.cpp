// The KV cache and the two attention paths (see attention.h).
#include "model/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "kernels/attn.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "model/model.h"
#include "ops/ops.h"
#include "util/common.h"

namespace bitnet {

namespace {

size_t checked_mul(size_t a, size_t b, const char* what) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) fail("the KV cache size overflows (%s): use a smaller context or fewer sequences", what);
    return r;
}

size_t kv_row_bytes(uint32_t type, int head_dim) {
    switch (type) {
        case TYPE_F32: return (size_t)head_dim * 4;
        case TYPE_F16: return (size_t)head_dim * 2;
        case TYPE_Q8_0: return (size_t)head_dim / 32 * sizeof(block_q8_0);
    }
    return 0;
}

const char* kv_type_name(uint32_t type) {
    return type == TYPE_F32 ? "f32" : type == TYPE_F16 ? "f16" : type == TYPE_Q8_0 ? "q8_0" : "?";
}

// Per-thread scratch of the fast path, in floats (each part a multiple of 16 floats).
struct Scratch {
    float *kt, *v, *q, *m, *l, *o, *M, *L, *O;
};
size_t scratch_floats(int hd) {
    return (size_t)hd * ATTN_CHUNK * 2 + (size_t)ATTN_ROWS * hd * 3 + 4 * ATTN_ROWS;
}
Scratch scratch_for(Context& ctx, int ith) {
    const int hd = ctx.model->hp.head_dim;
    float* p = ctx.attn_scratch.data() + (size_t)ith * scratch_floats(hd);
    Scratch s;
    s.kt = p, p += (size_t)hd * ATTN_CHUNK;
    s.v = p, p += (size_t)hd * ATTN_CHUNK;
    s.q = p, p += (size_t)ATTN_ROWS * hd;
    s.o = p, p += (size_t)ATTN_ROWS * hd;
    s.O = p, p += (size_t)ATTN_ROWS * hd;
    s.m = p, p += ATTN_ROWS;
    s.l = p, p += ATTN_ROWS;
    s.M = p, p += ATTN_ROWS;
    s.L = p;
    return s;
}

// One chunk of one head's keys and values as the kernels read them (pointing into the cache
// where its layout already is the kernels', else converted into the scratch).
struct ChunkKV {
    const float* kt;
    const float* v;
};
// Asks for a chunk's K and V bytes at once, before any arithmetic touches them. Generation over a
// long cache reads every chunk from memory exactly once, and the kernels walk K by dimension
// (half a 256-byte row per pass) and V by key: left to the hardware prefetcher, each chunk's
// misses come a few at a time between FMAs (measured: tg @ d4096 at 40% of what the cache's bytes
// allow). Issued together, they overlap.
// Only the split-by-chunks path (a few tokens over the cache) asks: prompt tiles read each chunk
// many times and find it in cache.
void prefetch_chunk(const KvCache& kv, const uint8_t* kh, const uint8_t* vh, int c, int n) {
    const size_t t0 = (size_t)c * ATTN_CHUNK;
    // (a blocked K chunk spreads its n keys over the whole block: each dimension's row of 64)
    const size_t k_bytes = (size_t)(kv.k_blocked ? ATTN_CHUNK : n) * kv.k_row_bytes;
    const size_t v_bytes = (size_t)n * kv.v_row_bytes;
    for (size_t o = 0; o < k_bytes; o += 64) __builtin_prefetch(kh + t0 * kv.k_row_bytes + o, 0, 2);
    for (size_t o = 0; o < v_bytes; o += 64) __builtin_prefetch(vh + t0 * kv.v_row_bytes + o, 0, 2);
}

ChunkKV load_chunk(const KvCache& kv, const uint8_t* kh, const uint8_t* vh, int c, int n, int hd,
                   const Scratch& s) {
    const AttnKernelSet& ks = *kv.kernels;
    const int64_t t0 = (int64_t)c * ATTN_CHUNK;
    ChunkKV r;
    if (kv.type_k == TYPE_F32)
        r.kt = (const float*)kh + t0 * hd;
    else if (kv.type_k == TYPE_F16)
        ks.load_k_f16(kh + t0 * hd * 2, 0, n, hd, s.kt), r.kt = s.kt;
    else
        ks.load_k_q8_0(kh + t0 * kv.k_row_bytes, kv.k_row_bytes, n, hd, s.kt), r.kt = s.kt;
    if (kv.type_v == TYPE_F32)
        r.v = (const float*)vh + t0 * hd;
    else if (kv.type_v == TYPE_F16)
        ks.load_v_f16(vh + t0 * kv.v_row_bytes, kv.v_row_bytes, n, hd, s.v), r.v = s.v;
    else
        ks.load_v_q8_0(vh + t0 * kv.v_row_bytes, kv.v_row_bytes, n, hd, s.v), r.v = s.v;
    return r;
}

// The merge of partial softmaxes, one function for both paths: chunk 0 starts the state, each
// later chunk is folded in, in chunk order.
inline void fold_first(float m, float l, const float* o, int hd, float* M, float* L, float* O) {
    *M = m;
    *L = l;
    std::memcpy(O, o, hd * sizeof(float));
}
inline void fold_next(float m, float l, const float* o, int hd, float* M, float* L, float* O) {
    const float mx = m > *M ? m : *M;
    const float a = std::exp(*M - mx), b = std::exp(m - mx);
    *L = *L * a + l * b;
    for (int d = 0; d < hd; ++d) {
        const float x = O[d] * a, y = o[d] * b;
        O[d] = x + y;
    }
    *M = mx;
}
inline void fold_finish(float L, const float* O, int hd, float* out) {
    for (int d = 0; d < hd; ++d) out[d] = O[d] / L;
}

// Rows a.. of the rows [r0, r0 + R) active in chunk c (n_kv > c * ATTN_CHUNK): a suffix, since
// n_kv does not decrease. Fills valid[] for them and returns a.
int active_rows(const AttnRow* rows, int R, int c, int* valid) {
    const int t0 = c * ATTN_CHUNK;
    int a = 0;
    while (a < R && rows[a].n_kv <= t0) ++a;
    for (int i = a; i < R; ++i) valid[i] = std::min(ATTN_CHUNK, rows[i].n_kv - t0);
    return a;
}

void scale_rows(const float* q, const AttnRow* rows, int R, int hd, float scale, float* out) {
    for (int i = 0; i < R; ++i)
        for (int d = 0; d < hd; ++d) out[(int64_t)i * hd + d] = q[rows[i].off + d] * scale;
}

// Fast path, prompt shape: one thread runs a tile of rows over all its chunks, folding as it goes.
void run_tile(Context& ctx, const uint8_t* kh, const uint8_t* vh, const AttnRow* rows, int R,
              const Scratch& s) {
    const KvCache& kv = ctx.kv;
    const int hd = ctx.model->hp.head_dim;
    scale_rows(ctx.q.data(), rows, R, hd, 1.0f / std::sqrt((float)hd), s.q);
    const int n_kv = rows[R - 1].n_kv;
    int valid[ATTN_ROWS];
    for (int c = 0; c * ATTN_CHUNK < n_kv; ++c) {
        const int n = std::min(ATTN_CHUNK, n_kv - c * ATTN_CHUNK);
        const int a = active_rows(rows, R, c, valid);
        const ChunkKV ch = load_chunk(kv, kh, vh, c, n, hd, s);
        kv.kernels->chunk(s.q + (int64_t)a * hd, R - a, valid + a, n, ch.kt, ch.v, hd, s.m, s.l, s.o);
        for (int i = a; i < R; ++i) {
            const float* o = s.o + (int64_t)(i - a) * hd;
            float* O = s.O + (int64_t)i * hd;
            if (c == 0) fold_first(s.m[i - a], s.l[i - a], o, hd, s.M + i, s.L + i, O);
            else fold_next(s.m[i - a], s.l[i - a], o, hd, s.M + i, s.L + i, O);
        }
    }
    for (int i = 0; i < R; ++i) fold_finish(s.L[i], s.O + (int64_t)i * hd, hd, ctx.att.data() + rows[i].off);
}

void attention_exact(Context& ctx, const uint8_t* kl, const uint8_t* vl, const int32_t* seq_ids,
                     const int32_t* positions, int n) {
    const HParams& hp = ctx.model->hp;
    const int hd = hp.head_dim, group = hp.n_head / hp.n_head_kv;
    const float scale = 1.0f / std::sqrt((float)hd);
    std::atomic<int64_t> next{0};
    const int64_t units = (int64_t)n * hp.n_head;
    ctx.pool->run([&](int ith, int) {
        float* scratch = ctx.scores.data() + (size_t)ith * ctx.n_ctx;
        for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
            const int i = (int)(u / hp.n_head), h = (int)(u % hp.n_head);
            const size_t head = (size_t)seq_ids[i] * hp.n_head_kv + h / group;
            const float* kc = (const float*)(kl + head * ctx.kv.k_head_bytes);
            const float* vc = (const float*)(vl + head * ctx.kv.v_head_bytes);
            const int64_t off = (int64_t)i * hp.n_head * hd + (int64_t)h * hd;
            attention_head(ctx.q.data() + off, kc, vc, hd, positions[i] + 1, hd, scale, scratch,
                           ctx.att.data() + off, ctx.b_keys[i]);
        }
    });
}

}  // namespace

void kv_cache_init(Context& ctx, uint32_t type_k, uint32_t type_v, bool exact) {
    const HParams& hp = ctx.model->hp;
    KvCache& kv = ctx.kv;
    for (uint32_t t : {type_k, type_v})
        if (t != TYPE_F32 && t != TYPE_F16 && t != TYPE_Q8_0)
            fail("KV cache type %u is not one of f32, f16, q8_0", t);
    if ((type_k == TYPE_Q8_0 || type_v == TYPE_Q8_0) && hp.head_dim % 32 != 0)
        fail("a q8_0 KV cache needs a head size that is a multiple of 32 (this model's is %d): use "
             "-ctk/-ctv f16",
             hp.head_dim);
    if (exact && (type_k != TYPE_F32 || type_v != TYPE_F32))
        fail("the exact attention (-fa off) reads an f32 KV cache, not K %s / V %s: use -ctk f32 "
             "-ctv f32, or the fast attention",
             kv_type_name(type_k), kv_type_name(type_v));
    kv.type_k = type_k;
    kv.type_v = type_v;
    kv.exact = exact;
    kv.k_blocked = !exact && type_k != TYPE_Q8_0;
    // The vector kernels want whole vectors of the head: other head sizes run the scalar set.
    kv.kernels = hp.head_dim % 16 == 0 ? &attn_kernels() : &attn_kernels_ref();
    kv.n_pos = (ctx.n_ctx + ATTN_CHUNK - 1) / ATTN_CHUNK * ATTN_CHUNK;
    kv.k_row_bytes = kv_row_bytes(type_k, hp.head_dim);
    kv.v_row_bytes = kv_row_bytes(type_v, hp.head_dim);
    kv.k_head_bytes = checked_mul(kv.k_row_bytes, kv.n_pos, "K of one head");
    kv.v_head_bytes = checked_mul(kv.v_row_bytes, kv.n_pos, "V of one head");
    const size_t heads = checked_mul(checked_mul(hp.n_layer, ctx.n_seq, "layers x sequences"),
                                     hp.n_head_kv, "KV heads");
    const size_t kb = checked_mul(heads, kv.k_head_bytes, "K"), vb = checked_mul(heads, kv.v_head_bytes, "V");
    if (kb > SIZE_MAX - vb) fail("the KV cache size overflows: use a smaller context or fewer sequences");
    try {
        kv.k.assign(kb, 0);
        kv.v.assign(vb, 0);
    } catch (const std::bad_alloc&) {
        fail("out of memory for a KV cache of %d sequence(s) x %d positions (%.1f GiB, K %s, V %s): "
             "use a smaller context size, fewer sequences or a smaller cache type (-ctk/-ctv q8_0)",
             ctx.n_seq, ctx.n_ctx, (double)(kb + vb) / (1u << 30), kv_type_name(type_k),
             kv_type_name(type_v));
    }
    ctx.attn_scratch.assign(scratch_floats(hp.head_dim) * ctx.pool->size(), 0.0f);
    ctx.attn_rows.reserve((size_t)ctx.n_batch * hp.n_head);
}

void kv_store(Context& ctx, int layer, int seq, int pos, const float* k, const float* v) {
    const HParams& hp = ctx.model->hp;
    const KvCache& kv = ctx.kv;
    const int hd = hp.head_dim;
    for (int h = 0; h < hp.n_head_kv; ++h) {
        const size_t head = ((size_t)layer * ctx.n_seq + seq) * hp.n_head_kv + h;
        uint8_t* kh = ctx.kv.k.data() + head * kv.k_head_bytes;
        uint8_t* vh = ctx.kv.v.data() + head * kv.v_head_bytes;
        const float* kx = k + (int64_t)h * hd;
        const float* vx = v + (int64_t)h * hd;
        if (kv.k_blocked) {
            const size_t at = (size_t)pos / ATTN_CHUNK * ATTN_CHUNK * hd + pos % ATTN_CHUNK;
            if (kv.type_k == TYPE_F32)
                for (int d = 0; d < hd; ++d) ((float*)kh)[at + (size_t)d * ATTN_CHUNK] = kx[d];
            else
                for (int d = 0; d < hd; ++d) ((uint16_t*)kh)[at + (size_t)d * ATTN_CHUNK] = fp32_to_fp16(kx[d]);
        } else if (kv.type_k == TYPE_F32) {
            std::memcpy(kh + (size_t)pos * kv.k_row_bytes, kx, kv.k_row_bytes);
        } else {
            kv_quantize_q8_0(kx, hd, kh + (size_t)pos * kv.k_row_bytes);
        }
        uint8_t* vr = vh + (size_t)pos * kv.v_row_bytes;
        if (kv.type_v == TYPE_F32) std::memcpy(vr, vx, kv.v_row_bytes);
        else if (kv.type_v == TYPE_F16)
            for (int d = 0; d < hd; ++d) ((uint16_t*)vr)[d] = fp32_to_fp16(vx[d]);
        else kv_quantize_q8_0(vx, hd, vr);
    }
}

void attention_prepare(Context& ctx, const int32_t* seq_ids, const int32_t* positions, int n) {
    if (ctx.kv.exact) return;
    const HParams& hp = ctx.model->hp;
    const int hd = hp.head_dim, group = hp.n_head / hp.n_head_kv;
    const int64_t dq = (int64_t)hp.n_head * hd;
    ctx.attn_rows.clear();
    ctx.attn_groups.clear();
    // Sequences in order of first appearance; a sequence's tokens come in increasing position.
    std::vector<int32_t>& order = ctx.attn_seq_order;
    int n_order = 0;
    for (int i = 0; i < n; ++i) {
        bool seen = false;
        for (int j = 0; j < n_order && !seen; ++j) seen = order[j] == seq_ids[i];
        if (!seen) order[n_order++] = seq_ids[i];
    }
    for (int j = 0; j < n_order; ++j) {
        const int s = order[j];
        for (int kvh = 0; kvh < hp.n_head_kv; ++kvh) {
            AttnGroup g;
            g.head = s * hp.n_head_kv + kvh;
            g.row0 = (int32_t)ctx.attn_rows.size();
            for (int i = 0; i < n; ++i) {
                if (seq_ids[i] != s) continue;
                for (int h = kvh * group; h < (kvh + 1) * group; ++h)
                    ctx.attn_rows.push_back({(int32_t)(i * dq + (int64_t)h * hd), positions[i] + 1});
            }
            g.n_rows = (int32_t)ctx.attn_rows.size() - g.row0;
            g.n_kv_max = ctx.attn_rows.back().n_kv;
            ctx.attn_groups.push_back(g);
        }
    }
    const std::vector<AttnGroup>& groups = ctx.attn_groups;
    const AttnRow* rows = ctx.attn_rows.data();
    const int nth = ctx.pool->size();

    int64_t tiles = 0, chunk_units = 0;
    int max_chunks = 0;
    for (const AttnGroup& g : groups) {
        tiles += (g.n_rows + ATTN_ROWS - 1) / ATTN_ROWS;
        const int nc = (g.n_kv_max + ATTN_CHUNK - 1) / ATTN_CHUNK;
        chunk_units += nc;
        max_chunks = std::max(max_chunks, nc);
    }
    const size_t stride = (size_t)hd + 2;  // one partial: m, l, o[hd]
    const size_t partial_floats = ctx.attn_rows.size() * max_chunks * stride;
    // Enough tiles to keep every thread busy: split by rows. Too few (a token or a few over the
    // cache): split by chunks of keys, when their partials fit in 64 MB.
    AttnPlan& plan = ctx.attn_plan;
    plan.by_chunks = tiles < 4 * nth && chunk_units > tiles && partial_floats * 4 <= (64u << 20);
    plan.chunk_units = chunk_units;
    plan.max_chunks = max_chunks;
    plan.stride = stride;
    if (plan.by_chunks && ctx.attn_partials.size() < partial_floats) ctx.attn_partials.resize(partial_floats);

    std::vector<int64_t>& tiles_order = ctx.attn_tiles;
    tiles_order.clear();
    if (plan.by_chunks) return;
    // Tiles with the most keys first, so that the last ones to be claimed are short.
    for (size_t gi = 0; gi < groups.size(); ++gi)
        for (int r = 0; r < groups[gi].n_rows; r += ATTN_ROWS) tiles_order.push_back((int64_t)gi << 32 | r);
    std::stable_sort(tiles_order.begin(), tiles_order.end(), [&](int64_t a, int64_t b) {
        const AttnGroup &ga = groups[a >> 32], &gb = groups[b >> 32];
        const int ra = std::min<int>(ga.n_rows, (int)(a & 0xffffffff) + ATTN_ROWS) - 1;
        const int rb = std::min<int>(gb.n_rows, (int)(b & 0xffffffff) + ATTN_ROWS) - 1;
        return rows[ga.row0 + ra].n_kv > rows[gb.row0 + rb].n_kv;
    });
}

void attention_layer(Context& ctx, int layer, const int32_t* seq_ids, const int32_t* positions, int n) {
    const HParams& hp = ctx.model->hp;
    const KvCache& kv = ctx.kv;
    const size_t heads = (size_t)ctx.n_seq * hp.n_head_kv;
    const uint8_t* kl = kv.k.data() + (size_t)layer * heads * kv.k_head_bytes;
    const uint8_t* vl = kv.v.data() + (size_t)layer * heads * kv.v_head_bytes;
    if (kv.exact) {
        attention_exact(ctx, kl, vl, seq_ids, positions, n);
        return;
    }
    const int hd = hp.head_dim;
    const AttnPlan& plan = ctx.attn_plan;
    const std::vector<AttnGroup>& groups = ctx.attn_groups;
    const AttnRow* rows = ctx.attn_rows.data();

    if (!plan.by_chunks) {
        const std::vector<int64_t>& order = ctx.attn_tiles;
        std::atomic<int64_t> next{0};
        ctx.pool->run([&](int ith, int) {
            const Scratch s = scratch_for(ctx, ith);
            for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < (int64_t)order.size();) {
                const AttnGroup& g = groups[order[u] >> 32];
                const int r = (int)(order[u] & 0xffffffff);
                run_tile(ctx, kl + g.head * kv.k_head_bytes, vl + g.head * kv.v_head_bytes,
                         rows + g.row0 + r, std::min(ATTN_ROWS, g.n_rows - r), s);
            }
        });
        return;
    }

    // By chunks: every (group, chunk) writes the partials of its active rows, then each row folds
    // its chunks in order.
    const int64_t chunk_units = plan.chunk_units;
    const int max_chunks = plan.max_chunks;
    const size_t stride = plan.stride;
    float* P = ctx.attn_partials.data();
    const float scale = 1.0f / std::sqrt((float)hd);
    std::atomic<int64_t> next{0};
    ctx.pool->run([&](int ith, int) {
        const Scratch s = scratch_for(ctx, ith);
        size_t gi = 0;
        int64_t base = 0;  // chunk units of the groups before gi
        for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < chunk_units;) {
            for (;;) {
                const int64_t nc = (groups[gi].n_kv_max + ATTN_CHUNK - 1) / ATTN_CHUNK;
                if (u < base + nc) break;
                base += nc;
                ++gi;
            }
            const AttnGroup& g = groups[gi];
            const int c = (int)(u - base);
            const int n = std::min(ATTN_CHUNK, g.n_kv_max - c * ATTN_CHUNK);
            const uint8_t* kh = kl + g.head * kv.k_head_bytes;
            const uint8_t* vh = vl + g.head * kv.v_head_bytes;
            prefetch_chunk(kv, kh, vh, c, n);
            const ChunkKV ch = load_chunk(kv, kh, vh, c, n, hd, s);
            int valid[ATTN_ROWS];
            for (int r0 = 0; r0 < g.n_rows; r0 += ATTN_ROWS) {
                const AttnRow* tr = rows + g.row0 + r0;
                const int R = std::min(ATTN_ROWS, g.n_rows - r0);
                const int a = active_rows(tr, R, c, valid);
                if (a == R) continue;
                scale_rows(ctx.q.data(), tr + a, R - a, hd, scale, s.q);
                kv.kernels->chunk(s.q, R - a, valid + a, n, ch.kt, ch.v, hd, s.m, s.l, s.o);
                for (int i = a; i < R; ++i) {
                    float* p = P + ((size_t)(g.row0 + r0 + i) * max_chunks + c) * stride;
                    p[0] = s.m[i - a];
                    p[1] = s.l[i - a];
                    std::memcpy(p + 2, s.o + (int64_t)(i - a) * hd, hd * sizeof(float));
                }
            }
        }
    });
    const int64_t n_rows = (int64_t)ctx.attn_rows.size();
    ctx.pool->run([&](int ith, int nth_) {
        const Scratch s = scratch_for(ctx, ith);
        int64_t b, e;
        ThreadPool::split(n_rows, ith, nth_, 1, &b, &e);
        for (int64_t r = b; r < e; ++r) {
            const float* p = P + (size_t)r * max_chunks * stride;
            const int nc = (rows[r].n_kv + ATTN_CHUNK - 1) / ATTN_CHUNK;
            fold_first(p[0], p[1], p + 2, hd, s.M, s.L, s.O);
            for (int c = 1; c < nc; ++c) {
                const float* pc = p + (size_t)c * stride;
                fold_next(pc[0], pc[1], pc + 2, hd, s.M, s.L, s.O);
            }
            fold_finish(*s.L, s.O, hd, ctx.att.data() + rows[r].off);
        }
    });
}

}  // namespace bitnet
