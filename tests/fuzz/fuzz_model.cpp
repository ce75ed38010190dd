// libFuzzer harness: arbitrary bytes as a GGUF model file. Loading must refuse a bad file with an
// error, never crash, read out of bounds or leak; a file that loads must give a context and run
// one token through the whole forward pass (every tensor type and layout the seeds hold: I2_S,
// TL1, TL2, TQ1_0/TQ2_0, float and quantized embeddings) with finite-size logits.
#include <cstdint>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    bitnet_model* model = fuzz::load_model_bytes(data, size);
    if (!model) return 0;
    bitnet_context_params cp = bitnet_context_default_params();
    // A short cache and one thread: a mutated file may declare a huge training context, and
    // threads would only slow every execution down.
    cp.n_ctx = 8;
    cp.n_threads = 1;
    cp.n_batch = 4;
    bitnet_context* ctx = bitnet_context_new(model, cp);
    if (ctx) {
        const int32_t n_vocab = bitnet_model_n_vocab(model);
        const bitnet_token bos = bitnet_token_bos(model);
        const bitnet_token tok = bos >= 0 && bos < n_vocab ? bos : 0;
        if (bitnet_decode(ctx, &tok, 1, 0) == 0) {
            const float* logits = bitnet_get_logits(ctx, -1);
            if (!logits) fuzz::fail("a successful decode kept no logits for its last token");
            bitnet_sampler_params sp = bitnet_sampler_default_params();
            sp.temperature = 0.0f;
            bitnet_sampler* s = bitnet_sampler_new(&sp);
            const bitnet_token next = bitnet_sampler_sample(s, logits, n_vocab);
            if (next < 0 || next >= n_vocab) fuzz::fail("greedy sample outside the vocabulary");
            bitnet_sampler_free(s);
        }
        bitnet_context_free(ctx);
    }
    bitnet_model_free(model);
    return 0;
}
