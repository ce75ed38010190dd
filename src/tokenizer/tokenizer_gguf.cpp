// Reads a tokenizer from the tokenizer.ggml.* keys of a GGUF file (llama.cpp's layout): byte-level
// BPE ("gpt2": tokens, token types, merges, pre-tokenizer name) or SentencePiece BPE ("llama":
// tokens, scores, token types, unknown token, add_space_prefix).
#include <climits>
#include <cstdint>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"

namespace bitnet {

namespace {

// A special token id: absent (-1), or a token of the vocabulary of n tokens. Read as int64 and
// checked before the int32 conversion, so an id of 2^32 + 5 is refused instead of becoming 5.
int32_t special_id(const GGUFFile& f, const char* key, size_t n) {
    const int64_t id = f.get_int(key, -1);
    if (id < -1 || id >= (int64_t)n)
        fail("%s: metadata '%s' = %lld is not a token of the vocabulary (0..%zu): the file is "
             "corrupt; convert the model again",
             f.path().c_str(), key, (long long)id, n - 1);
    return (int32_t)id;
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GGUFFile& f) {
    TokenizerConfig c;
    c.model = f.get_str("tokenizer.ggml.model");
    if (c.model != "gpt2" && c.model != "llama")
        fail("%s: tokenizer model '%s' is not supported (this engine reads byte-level BPE, "
             "tokenizer.ggml.model = gpt2, and SentencePiece BPE, llama)",
             f.path().c_str(), c.model.c_str());
    c.pre = f.get_str("tokenizer.ggml.pre", "default");
    c.tokens = f.get_str_array("tokenizer.ggml.tokens");
    if (c.tokens.empty() || c.tokens.size() > (size_t)INT32_MAX)
        fail("%s: tokenizer.ggml.tokens holds %zu tokens (expected 1 to 2^31 - 1)",
             f.path().c_str(), c.tokens.size());
    const size_t n = c.tokens.size();
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) {
        if (t < INT32_MIN || t > INT32_MAX)  // the range check itself is the tokenizer's
            fail("%s: tokenizer.ggml.token_type holds %lld, not a token type", f.path().c_str(),
                 (long long)t);
        c.token_types.push_back((int32_t)t);
    }
    if (f.find("tokenizer.ggml.merges")) c.merges = f.get_str_array("tokenizer.ggml.merges");
    if (c.model == "llama") {
        if (!f.find("tokenizer.ggml.scores"))
            fail("%s: SentencePiece tokenizer without tokenizer.ggml.scores; reconvert the model",
                 f.path().c_str());
        for (double s : f.get_float_array("tokenizer.ggml.scores")) c.scores.push_back((float)s);
        c.unk = special_id(f, "tokenizer.ggml.unknown_token_id", n);
        c.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
        // The engine's own key, written by utils/vocab.py for Metaspace tokenizer.json files.
        c.prepend_scheme = f.get_str("tokenizer.ggml.prepend_scheme", "sentencepiece");
    }
    c.bos = special_id(f, "tokenizer.ggml.bos_token_id", n);
    c.eos = special_id(f, "tokenizer.ggml.eos_token_id", n);
    c.eot = special_id(f, "tokenizer.ggml.eot_token_id", n);
    c.pad = special_id(f, "tokenizer.ggml.padding_token_id", n);
    c.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true);
    return std::make_unique<Tokenizer>(std::move(c));
}

}  // namespace bitnet
