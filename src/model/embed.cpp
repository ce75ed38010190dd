// Embeddings (see embed.h): texts are packed into multi-sequence batches, forward_batch writes
// the final-norm hidden state of each token the pooling needs into a buffer instead of logits,
// and each text's rows are pooled and normalized here.
#include "model/embed.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/common.h"

namespace bitnet {

void embed_texts(Context& ctx, const int32_t* tokens, const int32_t* lens, int n_texts,
                 Pooling pooling, bool normalize, float* out) {
    const int64_t d = ctx.model->hp.n_embd;
    if (pooling == Pooling::NONE)
        fail("embeddings need a pooling (mean, cls or last): this model names none; choose one");
    for (int s = 0; s < ctx.n_seq; ++s)
        if (ctx.seq_len[s] != 0)
            fail("embeddings need a context whose sequences are empty (sequence %d holds %d "
                 "tokens): clear them first",
                 s, ctx.seq_len[s]);
    std::vector<int64_t> start((size_t)n_texts + 1, 0);
    for (int t = 0; t < n_texts; ++t) {
        if (lens[t] <= 0) fail("text %d of %d has no tokens: nothing to embed", t, n_texts);
        if (lens[t] > ctx.n_ctx)
            fail("text %d has %d tokens, more than the context's %d: use a larger context or a "
                 "shorter text", t, lens[t], ctx.n_ctx);
        start[t + 1] = start[t] + lens[t];
    }
    for (int64_t i = 0; i < start[n_texts]; ++i)
        if (tokens[i] < 0 || tokens[i] >= ctx.model->hp.n_vocab)
            fail("token %lld of the texts: id %d is outside the vocabulary (0..%d)", (long long)i,
                 tokens[i], ctx.model->hp.n_vocab - 1);

    std::vector<int32_t> seq, pos;
    std::vector<int8_t> want;
    std::vector<float> hidden;
    // Clears the slots however the group ends: the next call (or a decode) finds them empty.
    struct SlotReset {
        Context& c;
        ~SlotReset() {
            std::fill(c.seq_len.begin(), c.seq_len.end(), 0);
            c.embd_out = nullptr;
        }
    } reset{ctx};
    for (int t0 = 0; t0 < n_texts; t0 += ctx.n_seq) {
        const int t1 = std::min(n_texts, t0 + ctx.n_seq);
        const int64_t n = start[t1] - start[t0];
        seq.resize(n);
        pos.resize(n);
        want.resize(n);
        for (int t = t0; t < t1; ++t)
            for (int64_t j = 0; j < lens[t]; ++j) {
                const int64_t i = start[t] - start[t0] + j;
                seq[i] = t - t0;
                pos[i] = (int32_t)j;
                want[i] = pooling == Pooling::MEAN || (pooling == Pooling::LAST && j == lens[t] - 1) ||
                          (pooling == Pooling::CLS && j == 0);
            }
        hidden.assign((size_t)n * d, 0.0f);
        ctx.embd_out = hidden.data();
        for (int64_t done = 0; done < n;) {
            const int chunk = (int)std::min<int64_t>(n - done, ctx.n_batch);
            forward_batch(ctx, tokens + start[t0] + done, seq.data() + done, pos.data() + done,
                          want.data() + done, chunk, (int)done);
            done += chunk;
        }
        ctx.embd_out = nullptr;
        std::fill(ctx.seq_len.begin(), ctx.seq_len.end(), 0);
        for (int t = t0; t < t1; ++t) {
            const float* h = hidden.data() + (start[t] - start[t0]) * d;
            float* o = out + (int64_t)t * d;
            if (pooling == Pooling::MEAN) {
                // Summed in double: the mean of a few thousand rows keeps float precision.
                std::vector<double> acc((size_t)d, 0.0);
                for (int64_t j = 0; j < lens[t]; ++j)
                    for (int64_t c = 0; c < d; ++c) acc[c] += h[j * d + c];
                for (int64_t c = 0; c < d; ++c) o[c] = (float)(acc[c] / lens[t]);
            } else {
                const int64_t row = pooling == Pooling::LAST ? lens[t] - 1 : 0;
                std::copy(h + row * d, h + (row + 1) * d, o);
            }
            if (normalize) {
                double ss = 0.0;
                for (int64_t c = 0; c < d; ++c) ss += (double)o[c] * o[c];
                // torch.nn.functional.normalize's floor on the norm (eps 1e-12).
                const float inv = (float)(1.0 / std::max(std::sqrt(ss), 1e-12));
                for (int64_t c = 0; c < d; ++c) o[c] *= inv;
            }
        }
    }
}

}  // namespace bitnet
