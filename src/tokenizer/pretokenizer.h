// Pre-tokenizers of byte-level BPE vocabularies: the split regexes of GPT-2, Llama 3 and Qwen2, written
// by hand over code points (std::regex has no \p{L} and is slow), with the exact match semantics
// of Oniguruma, the regex engine of Hugging Face `tokenizers`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bitnet::pretok {

enum class PreType {
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
    // \s*[\r\n]+|\s+(?!\S)|\s+
    LLAMA3,
    // Qwen2 / Qwen3: the Llama-3 regex with single digits, \p{N} for \p{N}{1,3}
    QWEN2,
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    GPT2,
};

// A tokenizer.ggml.pre name (llama.cpp's names) and what it stands for.
struct PreInfo {
    const char* name;
    PreType type;
    bool ignore_merges;  // a piece that is a whole vocabulary token skips BPE (Llama 3 sets it)
};

// The entry for a tokenizer.ggml.pre name, or nullptr when it is not supported.
const PreInfo* find_pre(const std::string& name);
// Supported names, comma-separated, for error messages.
std::string known_pre_names();

// Splits text[begin, end) into the consecutive matches of the type's regex (every code point is
// matched by some alternative, so the pieces cover the range) and appends the byte offset just
// past each piece to `ends`; nothing for an empty range. Ill-formed UTF-8 bytes take part as
// U+FFFD, one per byte (see unicode::utf8_decode), so pieces always end on unit boundaries.
void split(PreType type, const std::string& text, size_t begin, size_t end,
           std::vector<uint32_t>& ends);

}  // namespace bitnet::pretok
