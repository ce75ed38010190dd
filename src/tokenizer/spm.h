// SentencePiece BPE, the merge stage of llama.cpp's "llama" tokenizer model (Llama-2 vocabularies):
// the text between added tokens is escaped (spaces -> "▁", optional "▁" prefix), split into UTF-8
// characters, and adjacent pieces are merged best score first; characters no piece covers fall
// back to <0xXX> byte tokens (or the unknown token). Internal to src/tokenizer/.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace bitnet::spm {

class Model {
public:
    // Indexes the normal tokens of cfg for merging. cfg must outlive the Model, unchanged (the
    // index holds views of its token strings). Throws bitnet::Error when the scores do not match
    // the tokens, or when the vocabulary can spell neither unknown bytes (<0x00>..<0xFF> byte
    // tokens) nor unknown characters (an unknown token).
    explicit Model(const TokenizerConfig& cfg);

    // Appends the tokens of text[begin, end), one run of text between added tokens, to out.
    // prefix: start the escaped text with "▁" (SentencePiece's dummy prefix). Bytes that are not
    // well-formed UTF-8 are characters of their own, so they come out as their byte tokens.
    void encode(const std::string& text, size_t begin, size_t end, bool prefix,
                std::vector<int32_t>& out) const;

    // Bytes a token decodes to: a byte token's byte; otherwise its text with "▁" as a space.
    static std::string token_bytes(const std::string& text, int32_t type);

private:
    std::unordered_map<std::string_view, int32_t> normal_;  // text of a NORMAL token -> id
    const std::vector<float>& scores_;
    int32_t byte_token_[256];  // <0xXX> token per byte, -1 when missing
    int32_t unk_;
};

}  // namespace bitnet::spm
