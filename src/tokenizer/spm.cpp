// SentencePiece BPE encoding (see spm.h), the algorithm of sentencepiece's bpe_model.cc, which
// Hugging Face `tokenizers` reproduces for Llama-2's tokenizer.json with merges ranked by score:
//  1. escape: every ' ' becomes "▁" (U+2581), and "▁" is prepended when asked (dummy prefix);
//  2. one symbol per UTF-8 character (an ill-formed byte is a symbol of its own);
//  3. every adjacent pair whose concatenation is a normal token is a candidate, scored by that
//     token's score; the best candidate merges, ties going to the leftmost, and the new symbol's
//     pairs with its neighbours become candidates. A max-heap of candidates, validated when popped
//     (a side may have merged since), keeps this O(n log n) on long inputs;
//  4. each final symbol is its token; a character that is no token falls back to its UTF-8 bytes'
//     <0xXX> tokens, else to the unknown token (consecutive unknowns fuse into one, as in
//     sentencepiece and `tokenizers` with fuse_unk).
// Only NORMAL tokens are merge results: control, byte and unknown pieces cannot be spelled by text
// (sentencepiece keeps them out of its piece table), user-defined ones are matched before this
// stage, and UNUSED ones are padding. (sentencepiece would merge into an unused piece and split it
// again; Llama-2 vocabularies have none.)
#include "tokenizer/spm.h"

#include <algorithm>

#include "tokenizer/unicode.h"
#include "util/common.h"

namespace bitnet::spm {

namespace {

const char kSpace[] = "\xE2\x96\x81";  // "▁" in UTF-8
constexpr size_t kSpaceLen = 3;

// "<0xXX>" -> XX, or -1 when text is not of that form.
int parse_byte_token(const std::string& text) {
    if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; ++i) {
        char c = text[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

struct Symbol {
    uint32_t begin, len;  // bytes of the escaped text; len 0 once merged into its left neighbour
    int32_t prev, next;   // neighbours, -1 at the ends
};

struct Candidate {
    float score;
    int32_t left, right;  // symbol indexes
    uint32_t len;         // bytes of the merged piece, to detect a side that changed since
    int32_t id;
    // std heaps pop the largest: best score first, then the leftmost pair.
    bool operator<(const Candidate& o) const {
        return score != o.score ? score < o.score : left > o.left;
    }
};

}  // namespace

Model::Model(const TokenizerConfig& cfg) : scores_(cfg.scores), unk_(cfg.unk) {
    const size_t n = cfg.tokens.size();
    if (cfg.scores.size() != n) {
        fail("SentencePiece vocabulary has %zu scores for %zu tokens; the file is inconsistent "
             "(tokenizer.ggml.scores)",
             cfg.scores.size(), n);
    }
    std::fill(std::begin(byte_token_), std::end(byte_token_), -1);
    int n_bytes = 0;
    normal_.reserve(n);
    for (size_t id = 0; id < n; ++id) {
        const std::string& text = cfg.tokens[id];
        int32_t type = cfg.token_types.empty() ? TOKEN_NORMAL : cfg.token_types[id];
        if (type == TOKEN_NORMAL && !text.empty()) {
            normal_.emplace(text, (int32_t)id);  // the first of duplicate texts wins
        } else if (type == TOKEN_BYTE) {
            int b = parse_byte_token(text);
            if (b < 0) fail("byte token %zu is '%s', not of the form <0xXX>", id, text.c_str());
            if (byte_token_[b] < 0) ++n_bytes, byte_token_[b] = (int32_t)id;
        }
    }
    if (n_bytes != 256 && n_bytes != 0) {
        fail("SentencePiece vocabulary has %d of the 256 byte tokens <0x00>..<0xFF>; the file is "
             "incomplete",
             n_bytes);
    }
    if (n_bytes == 0 && unk_ < 0) {
        fail("SentencePiece vocabulary has neither byte tokens nor an unknown token, so it cannot "
             "encode characters outside it (tokenizer.ggml.unknown_token_id)");
    }
}

std::string Model::token_bytes(const std::string& text, int32_t type) {
    if (type == TOKEN_BYTE) {
        int b = parse_byte_token(text);
        if (b >= 0) return std::string(1, (char)b);
    }
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, kSpaceLen, kSpace) == 0) {
            out += ' ';
            i += kSpaceLen;
        } else {
            out += text[i++];
        }
    }
    return out;
}

void Model::encode(const std::string& text, size_t begin, size_t end, bool prefix,
                   std::vector<int32_t>& out) const {
    std::string esc;
    esc.reserve((end - begin) * 3 / 2 + kSpaceLen);
    if (prefix) esc += kSpace;
    for (size_t i = begin; i < end; ++i) {
        if (text[i] == ' ') esc += kSpace;
        else esc += text[i];
    }

    std::vector<uint32_t> cps, offs;
    unicode::utf8_decode(esc, 0, esc.size(), cps, offs);
    const int32_t n = (int32_t)cps.size();
    std::vector<Symbol> syms(n);
    for (int32_t i = 0; i < n; ++i) {
        syms[i] = {offs[i], offs[i + 1] - offs[i], i - 1, i + 1 < n ? i + 1 : -1};
    }
    std::vector<Candidate> heap;
    auto push_pair = [&](int32_t left) {
        if (left < 0 || syms[left].next < 0) return;
        const Symbol& l = syms[left];
        const Symbol& r = syms[l.next];
        auto it = normal_.find(std::string_view(esc.data() + l.begin, l.len + r.len));
        if (it == normal_.end()) return;
        heap.push_back({scores_[it->second], left, l.next, l.len + r.len, it->second});
        std::push_heap(heap.begin(), heap.end());
    };
    for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end());
        const Candidate c = heap.back();
        heap.pop_back();
        Symbol& l = syms[c.left];
        if (l.next != c.right || l.len == 0) continue;  // stale: a side merged elsewhere
        Symbol& r = syms[c.right];
        if (l.len + r.len != c.len) continue;
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) syms[r.next].prev = c.left;
        push_pair(l.prev);
        push_pair(c.left);
    }

    bool prev_unk = false;
    for (int32_t i = n ? 0 : -1; i >= 0; i = syms[i].next) {
        const Symbol& s = syms[i];
        auto it = normal_.find(std::string_view(esc.data() + s.begin, s.len));
        if (it != normal_.end()) {
            out.push_back(it->second);
            prev_unk = false;
        } else if (byte_token_[0] >= 0) {
            for (uint32_t k = 0; k < s.len; ++k) out.push_back(byte_token_[(uint8_t)esc[s.begin + k]]);
            prev_unk = false;
        } else {
            if (!prev_unk) out.push_back(unk_);
            prev_unk = true;
        }
    }
}

}  // namespace bitnet::spm
