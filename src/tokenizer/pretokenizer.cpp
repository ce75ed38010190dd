// Pre-tokenizers (see pretokenizer.h). Each match_* function returns the end of the piece that
// the regex matches at unit i, trying the alternatives in order as a backtracking engine does;
// comments give the backtracking outcome where it is not obvious.
#include "tokenizer/pretokenizer.h"

#include "tokenizer/unicode.h"
#include "util/common.h"

namespace bitnet::pretok {

namespace {

using unicode::CP_LETTER;
using unicode::CP_NUMBER;
using unicode::CP_SPACE;

// Code points of one text segment with their classes; unit i spans bytes [offs[i], offs[i+1]).
struct Units {
    std::vector<uint32_t> cps;
    std::vector<uint32_t> offs;
    std::vector<uint8_t> flags;
    size_t n = 0;

    void load(const std::string& text, size_t begin, size_t end) {
        cps.clear();
        offs.clear();
        unicode::utf8_decode(text, begin, end, cps, offs);
        n = cps.size();
        flags.resize(n);
        for (size_t i = 0; i < n; ++i) flags[i] = unicode::cp_flags(cps[i]);
    }
    bool letter(size_t i) const { return i < n && (flags[i] & CP_LETTER); }
    bool number(size_t i) const { return i < n && (flags[i] & CP_NUMBER); }
    bool space(size_t i) const { return i < n && (flags[i] & CP_SPACE); }
    // [^\s\p{L}\p{N}]: punctuation, symbols, marks, controls, invalid bytes.
    bool other(size_t i) const { return i < n && flags[i] == 0; }
    bool crlf(size_t i) const { return i < n && (cps[i] == '\r' || cps[i] == '\n'); }
    bool is(size_t i, uint32_t cp) const { return i < n && cps[i] == cp; }
};

// Oniguruma's case folding as it matters for (?i:'s|'t|'re|'ve|'m|'ll|'d): ASCII letters and
// U+017F LATIN SMALL LETTER LONG S, which folds to 's' (checked against `tokenizers` for all
// code points by tests/test_tokenizer.py).
uint32_t fold(uint32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return cp + ('a' - 'A');
    if (cp == 0x17F) return 's';
    return cp;
}

// End of the contraction 's 't 're 've 'm 'll 'd at i, or i when there is none.
size_t match_contraction(const Units& u, size_t i, bool icase) {
    if (!u.is(i, '\'') || i + 1 >= u.n) return i;
    auto at = [&](size_t k) -> uint32_t {
        if (k >= u.n) return 0;
        return icase ? fold(u.cps[k]) : u.cps[k];
    };
    uint32_t c = at(i + 1);
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return i + 2;
    if ((c == 'r' || c == 'v') && at(i + 2) == 'e') return i + 3;
    if (c == 'l' && at(i + 2) == 'l') return i + 3;
    return i;
}

// \s+(?!\S) then \s+ for the whitespace run starting at i: the run minus its last unit when a
// non-space follows and the run is longer than one (that unit joins the next piece).
size_t match_trailing_space(const Units& u, size_t i) {
    size_t k = i;
    while (u.space(k)) ++k;
    return (k < u.n && k - i >= 2) ? k - 1 : k;
}

// One piece of the Llama-3 regex at i:
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
// Qwen2's regex is the same with \p{N} for \p{N}{1,3}: max_digits 1 instead of 3.
size_t match_llama3(const Units& u, size_t i, size_t max_digits = 3) {
    size_t j = match_contraction(u, i, true);
    if (j != i) return j;
    if (u.letter(i) || (!u.crlf(i) && !u.number(i) && u.letter(i + 1))) {
        j = i + 1;
        while (u.letter(j)) ++j;
        return j;
    }
    if (u.number(i)) {
        j = i + 1;
        while (j < i + max_digits && u.number(j)) ++j;
        return j;
    }
    if (u.other(i) || (u.is(i, ' ') && u.other(i + 1))) {
        j = i + 1;
        while (u.other(j)) ++j;
        while (u.crlf(j)) ++j;
        return j;
    }
    // Whitespace. \s*[\r\n]+ backtracks to the last CR/LF of the run and ends right after it.
    size_t k = i;
    size_t after_last_crlf = i;
    while (u.space(k)) {
        if (u.crlf(k)) after_last_crlf = k + 1;
        ++k;
    }
    BITNET_ASSERT(k > i);  // every code point is letter, number, space or other
    if (after_last_crlf > i) return after_last_crlf;
    return match_trailing_space(u, i);
}

// One piece of the GPT-2 regex at i:
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const Units& u, size_t i) {
    size_t j = match_contraction(u, i, false);
    if (j != i) return j;
    size_t s = u.is(i, ' ') ? i + 1 : i;  // the optional leading space
    bool (Units::*cls)(size_t) const = nullptr;
    if (u.letter(s)) {
        cls = &Units::letter;
    } else if (u.number(s)) {
        cls = &Units::number;
    } else if (u.other(s)) {
        cls = &Units::other;
    }
    if (cls) {
        j = s + 1;
        while ((u.*cls)(j)) ++j;
        return j;
    }
    BITNET_ASSERT(u.space(i));
    return match_trailing_space(u, i);
}

// llama.cpp's names, with ignore_merges as llama.cpp sets it for each. Falcon3 ("falcon3") and
// Falcon-E ("falcon_e", the name microsoft/BitNet's converter writes) split with the Llama-3
// regex and set ignore_merges; "smaug-bpe" is the Llama-3 regex without ignore_merges.
const PreInfo kPreTypes[] = {
    {"llama-bpe", PreType::LLAMA3, true}, {"llama3", PreType::LLAMA3, true},
    {"llama-v3", PreType::LLAMA3, true},  {"falcon3", PreType::LLAMA3, true},
    {"falcon_e", PreType::LLAMA3, true},  {"smaug-bpe", PreType::LLAMA3, false},
    {"gpt2", PreType::GPT2, false},       {"gpt-2", PreType::GPT2, false},
    {"qwen2", PreType::QWEN2, false},
};

}  // namespace

const PreInfo* find_pre(const std::string& name) {
    for (const PreInfo& p : kPreTypes) {
        if (name == p.name) return &p;
    }
    return nullptr;
}

std::string known_pre_names() {
    std::string names;
    for (const PreInfo& p : kPreTypes) names += (names.empty() ? "" : ", ") + std::string(p.name);
    return names;
}

void split(PreType type, const std::string& text, size_t begin, size_t end,
           std::vector<uint32_t>& ends) {
    if (begin == end) return;
    Units u;
    u.load(text, begin, end);
    for (size_t i = 0; i < u.n;) {
        i = type == PreType::LLAMA3  ? match_llama3(u, i)
            : type == PreType::QWEN2 ? match_llama3(u, i, 1)
                                     : match_gpt2(u, i);
        ends.push_back(u.offs[i]);
    }
}

}  // namespace bitnet::pretok
