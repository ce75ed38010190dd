// Reads a tokenizer from the tokenizer.ggml.* keys of a GGUF file (llama.cpp's layout): byte-level
// BPE ("gpt2": tokens, token types, merges, pre-tokenizer name) or SentencePiece BPE ("llama":
// tokens, scores, token types, unknown token, add_space_prefix).
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"

namespace bitnet {

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GGUFFile& f) {
    TokenizerConfig c;
    c.model = f.get_str("tokenizer.ggml.model");
    if (c.model != "gpt2" && c.model != "llama")
        fail("%s: tokenizer model '%s' is not supported (this engine reads byte-level BPE, "
             "tokenizer.ggml.model = gpt2, and SentencePiece BPE, llama)",
             f.path().c_str(), c.model.c_str());
    c.pre = f.get_str("tokenizer.ggml.pre", "default");
    c.tokens = f.get_str_array("tokenizer.ggml.tokens");
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) c.token_types.push_back((int32_t)t);
    if (f.find("tokenizer.ggml.merges")) c.merges = f.get_str_array("tokenizer.ggml.merges");
    if (c.model == "llama") {
        if (!f.find("tokenizer.ggml.scores"))
            fail("%s: SentencePiece tokenizer without tokenizer.ggml.scores; reconvert the model",
                 f.path().c_str());
        for (double s : f.get_float_array("tokenizer.ggml.scores")) c.scores.push_back((float)s);
        c.unk = (int32_t)f.get_int("tokenizer.ggml.unknown_token_id", -1);
        c.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
        // The engine's own key, written by utils/vocab.py for Metaspace tokenizer.json files.
        c.prepend_scheme = f.get_str("tokenizer.ggml.prepend_scheme", "sentencepiece");
    }
    c.bos = (int32_t)f.get_int("tokenizer.ggml.bos_token_id", -1);
    c.eos = (int32_t)f.get_int("tokenizer.ggml.eos_token_id", -1);
    c.eot = (int32_t)f.get_int("tokenizer.ggml.eot_token_id", -1);
    c.pad = (int32_t)f.get_int("tokenizer.ggml.padding_token_id", -1);
    c.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true);
    const int32_t n = (int32_t)c.tokens.size();
    for (int32_t id : {c.bos, c.eos, c.eot, c.pad, c.unk})
        if (id >= n)
            fail("%s: a special token id (%d) is past the end of the vocabulary (%d tokens)",
                 f.path().c_str(), id, n);
    return std::make_unique<Tokenizer>(std::move(c));
}

}  // namespace bitnet
