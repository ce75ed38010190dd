// Byte-level BPE tokenizer (GPT-2 / Llama-3 style), exact with Hugging Face `tokenizers` for the
// same vocabulary, merges and pre-tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bitnet {

// GGUF token types (llama.cpp numbering).
enum TokenType : int32_t {
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,
    TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6,
};

struct TokenizerConfig {
    std::string model = "gpt2";       // tokenizer.ggml.model
    std::string pre = "llama-bpe";    // tokenizer.ggml.pre
    std::vector<std::string> tokens;  // byte-level strings (GPT-2 byte-to-unicode alphabet)
    std::vector<int32_t> token_types; // same length as tokens, or empty (all normal)
    std::vector<std::string> merges;  // "left right", highest priority first
    int32_t bos = -1, eos = -1, eot = -1, pad = -1;
    bool add_bos = true;
};

class Tokenizer {
public:
    // Throws bitnet::Error for an unsupported model or pre-tokenizer, or inconsistent tables.
    explicit Tokenizer(TokenizerConfig cfg);
    ~Tokenizer();

    // Encodes UTF-8 text (invalid UTF-8 is handled as `tokenizers` does). With parse_special,
    // the text of control/user-defined tokens is matched and emitted as those tokens (Hugging
    // Face's default); with add_bos the BOS token is prepended when the vocabulary asks for it.
    std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const;

    // Raw bytes of one token (special tokens give their text). Throws for an id out of range.
    std::string token_to_piece(int32_t id) const;
    std::string decode(const std::vector<int32_t>& ids) const;

    int32_t n_vocab() const;
    int32_t bos() const;
    int32_t eos() const;
    int32_t eot() const;
    // End of generation: eos, eot, or another control token such as <|end_of_text|>/<|eom_id|>.
    bool is_eog(int32_t id) const;
    bool add_bos() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitnet
