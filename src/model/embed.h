// Embeddings: many texts through the transformer at once, each pooled into one vector of n_embd
// floats (no output layer). Used by the C API's bitnet_embed.
#pragma once

#include <cstdint>

#include "model/model.h"

namespace bitnet {

// Embeds n_texts texts, text t being lens[t] tokens of `tokens` (concatenated in order), into
// out (n_texts, n_embd): the final-norm hidden states pooled (LAST: the text's last token, CLS:
// its first, MEAN: the average over its tokens), then scaled to unit L2 norm when normalize.
// Texts go n_seq at a time into the context's sequence slots, their tokens packed into batches of
// up to n_batch from several texts (one weight pass per batch); every slot it uses is empty
// before and cleared after, so nothing of one text is cached for the next and each result is that
// of the text alone. Throws bitnet::Error for an empty text, one longer than n_ctx, a token out
// of the vocabulary, pooling NONE, or a context whose slots are in use.
void embed_texts(Context& ctx, const int32_t* tokens, const int32_t* lens, int n_texts,
                 Pooling pooling, bool normalize, float* out);

}  // namespace bitnet
