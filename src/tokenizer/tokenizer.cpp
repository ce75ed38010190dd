// The Tokenizer: added-token matching, decoding and the special ids for both vocabulary kinds, and
// the byte-level BPE (tokenizer.ggml.model = "gpt2"), exact with Hugging Face `tokenizers` for
// GPT-2 and Llama-3 style vocabularies. SentencePiece vocabularies (model "llama") share the
// added-token stage and hand each run of text between added tokens to spm::Model (spm.cpp).
//
// encode() runs the same stages as a `tokenizers` pipeline of the form
//   added tokens -> Split(pre-tokenizer regex, isolated) -> ByteLevel(use_regex=false) -> BPE:
//  1. added tokens: the texts of CONTROL and UNKNOWN tokens (Hugging Face's special added tokens)
//     and of USER_DEFINED tokens (non-special added tokens) are found leftmost-longest in one
//     pass, like `tokenizers` does for added tokens with normalized=false. A match is emitted as
//     its token, except a special one without parse_special, whose text is then plain text
//     (`tokenizers` with encode_special_tokens=True); the text between matches goes through the
//     next stages (for SentencePiece: spm::Model, with the "▁" prefix rule of prepend_scheme);
//  2. pre-tokenization: the regex of the vocabulary's pre-tokenizer, hand-written over code
//     points (std::regex knows no \p{L}); ill-formed UTF-8 bytes count as U+FFFD for the regex
//     but keep their raw byte, so encode is total and decode(encode(x)) == x for any bytes;
//  3. BPE on each piece's bytes, one token per byte to start, repeatedly merging the adjacent
//     pair of lowest merge rank, leftmost first (a heap of candidate pairs, validated on pop).
//     Llama-3 vocabularies set `ignore_merges`: a piece that is a whole token is that token.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm.h"
#include "tokenizer/unicode.h"
#include "util/common.h"

namespace bitnet {

namespace {

using pretok::PreInfo;

// Text of control tokens that end generation in the model families we run.
const char* const kEogNames[] = {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>",
                                 "</s>",            "<|im_end|>", "<|endoftext|>"};

uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

struct Merge {
    int32_t rank;
    int32_t id;  // token of the merged pair
};

// Byte trie of the added tokens' texts, for leftmost-longest matching.
struct AddedTrie {
    struct Node {
        std::map<uint8_t, int32_t> next;
        int32_t token = -1;
        bool control = false;
    };
    std::vector<Node> nodes{1};
    bool first_byte[256] = {};

    void insert(const std::string& text, int32_t token, bool control) {
        if (text.empty()) return;
        int32_t cur = 0;
        for (unsigned char c : text) {
            auto it = nodes[cur].next.find(c);
            if (it == nodes[cur].next.end()) {
                nodes.emplace_back();
                it = nodes[cur].next.emplace(c, (int32_t)nodes.size() - 1).first;
            }
            cur = it->second;
        }
        if (nodes[cur].token < 0) {  // the first of duplicate texts wins
            nodes[cur].token = token;
            nodes[cur].control = control;
        }
        first_byte[(unsigned char)text[0]] = true;
    }

    struct Match {
        int32_t token = -1;  // -1: none
        size_t len = 0;
        bool control = false;
    };

    // Longest added token starting at text[pos].
    Match match(const std::string& text, size_t pos) const {
        Match best;
        if (!first_byte[(unsigned char)text[pos]]) return best;
        int32_t cur = 0;
        for (size_t i = pos; i < text.size(); ++i) {
            auto it = nodes[cur].next.find((uint8_t)text[i]);
            if (it == nodes[cur].next.end()) break;
            cur = it->second;
            const Node& nd = nodes[cur];
            if (nd.token >= 0) best = {nd.token, i + 1 - pos, nd.control};
        }
        return best;
    }
};

// Per-call scratch buffers, reused across the pieces of one encode() call.
struct Scratch {
    std::vector<uint32_t> ends;  // piece ends of the current text segment
    struct Sym {
        int32_t id;
        int32_t prev, next;  // neighbours in the piece, -1 at the ends
    };
    struct Cand {
        int32_t rank, left, left_id, right_id, merged_id;
        // std heaps are max-heaps: "greater" means lower priority (higher rank, further right).
        bool operator<(const Cand& o) const {
            return rank != o.rank ? rank > o.rank : left > o.left;
        }
    };
    std::vector<Sym> syms;
    std::vector<Cand> heap;
};

// Where SentencePiece puts its "▁" prefix (TokenizerConfig::prepend_scheme).
enum class Prepend { SENTENCEPIECE, METASPACE_ALWAYS, METASPACE_FIRST };

}  // namespace

struct Tokenizer::Impl {
    TokenizerConfig cfg;
    std::unique_ptr<spm::Model> spm;  // SentencePiece merge stage; null for byte-level BPE
    Prepend prepend = Prepend::SENTENCEPIECE;
    PreInfo pre{};
    std::vector<std::string> pieces;                  // raw bytes of each token
    std::unordered_map<std::string, int32_t> by_raw;  // raw bytes of a BPE-reachable token -> id
    std::unordered_map<uint64_t, Merge> merges;       // (left id, right id) -> merge
    int32_t byte_token[256];                          // single-byte tokens
    AddedTrie added;
    std::unordered_set<int32_t> eog;

    int32_t type_of(size_t id) const {
        return cfg.token_types.empty() ? TOKEN_NORMAL : cfg.token_types[id];
    }
    static bool is_added(int32_t type) {
        return type == TOKEN_CONTROL || type == TOKEN_USER_DEFINED || type == TOKEN_UNKNOWN;
    }

    void init_common(std::unordered_map<std::string, int32_t>& by_text);
    void init_bpe(const std::unordered_map<std::string, int32_t>& by_text);
    void init_spm();

    void encode_piece(const std::string& text, size_t begin, size_t end, Scratch& sc,
                      std::vector<int32_t>& out) const;
    void encode_text(const std::string& text, size_t begin, size_t end, Scratch& sc,
                     std::vector<int32_t>& out) const;
};

namespace {

// Raw bytes of a vocabulary string written in the byte-level alphabet; false if a code point of
// it is outside the alphabet (added tokens such as "<|reserved special token 0|>").
bool byte_level_to_raw(const std::string& s, std::string& raw) {
    std::vector<uint32_t> cps, offs;
    unicode::utf8_decode(s, 0, s.size(), cps, offs);
    raw.clear();
    for (size_t i = 0; i < cps.size(); ++i) {
        int b = unicode::cp_to_byte(cps[i]);  // -1 also for CP_INVALID, i.e. bad UTF-8
        if (b < 0) return false;
        raw += (char)b;
    }
    return true;
}

}  // namespace

Tokenizer::Tokenizer(TokenizerConfig cfg) : impl_(new Impl) {
    Impl& m = *impl_;
    m.cfg = std::move(cfg);
    if (m.cfg.model != "gpt2" && m.cfg.model != "llama") {
        fail("tokenizer model '%s' is not supported: byte-level BPE ('gpt2') and SentencePiece BPE "
             "('llama') are implemented",
             m.cfg.model.c_str());
    }
    std::unordered_map<std::string, int32_t> by_text;  // token text -> first id
    m.init_common(by_text);
    if (m.cfg.model == "llama") m.init_spm();
    else m.init_bpe(by_text);
}

// Checks shared by both models; fills by_text, the added-token trie, the end-of-generation set and
// (SentencePiece) the pieces.
void Tokenizer::Impl::init_common(std::unordered_map<std::string, int32_t>& by_text) {
    const TokenizerConfig& c = cfg;
    const size_t n = c.tokens.size();
    if (n == 0 || n > (size_t)INT32_MAX) fail("tokenizer vocabulary has %zu tokens", n);
    if (!c.token_types.empty() && c.token_types.size() != n) {
        fail("tokenizer has %zu token types for %zu tokens; the file is inconsistent",
             c.token_types.size(), n);
    }
    const int32_t specials[] = {c.bos, c.eos, c.eot, c.pad, c.unk};
    for (int32_t id : specials) {
        if (id < -1 || id >= (int32_t)n) {
            fail("tokenizer special token id %d is out of range [0, %zu)", id, n);
        }
    }
    pieces.resize(n);
    for (size_t id = 0; id < n; ++id) {
        const std::string& t = c.tokens[id];
        int32_t type = type_of(id);
        if (type < 0 || type > TOKEN_BYTE) fail("token %zu has unknown type %d", id, (int)type);
        by_text.emplace(t, (int32_t)id);
        if (c.model == "llama") pieces[id] = spm::Model::token_bytes(t, type);  // gpt2: init_bpe
        if (is_added(type)) added.insert(t, (int32_t)id, type != TOKEN_USER_DEFINED);
    }
    for (int32_t id : {c.eos, c.eot}) {
        if (id >= 0) eog.insert(id);
    }
    for (const char* name : kEogNames) {
        auto it = by_text.find(name);
        if (it != by_text.end() && is_added(type_of(it->second))) eog.insert(it->second);
    }
}

void Tokenizer::Impl::init_spm() {
    if (cfg.prepend_scheme == "sentencepiece") prepend = Prepend::SENTENCEPIECE;
    else if (cfg.prepend_scheme == "metaspace-always") prepend = Prepend::METASPACE_ALWAYS;
    else if (cfg.prepend_scheme == "metaspace-first") prepend = Prepend::METASPACE_FIRST;
    else {
        fail("tokenizer prepend scheme '%s' is not supported (known: sentencepiece, "
             "metaspace-always, metaspace-first)",
             cfg.prepend_scheme.c_str());
    }
    spm = std::make_unique<spm::Model>(cfg);
}

// Byte-level BPE: pieces as raw bytes, the raw-bytes index, single-byte tokens and merges.
void Tokenizer::Impl::init_bpe(const std::unordered_map<std::string, int32_t>& by_text) {
    const TokenizerConfig& c = cfg;
    const PreInfo* p = pretok::find_pre(c.pre);
    if (!p) {
        fail("tokenizer pre-tokenizer '%s' is not supported (known: %s); reconvert the model "
             "with a supported tokenizer",
             c.pre.c_str(), pretok::known_pre_names().c_str());
    }
    pre = *p;
    std::string raw;
    for (size_t id = 0; id < c.tokens.size(); ++id) {
        const std::string& t = c.tokens[id];
        int32_t type = type_of(id);
        bool in_alphabet = byte_level_to_raw(t, raw);
        // Control tokens print as their text; other tokens as their bytes, or, like the ByteLevel
        // decoder, as their text when it is not written in the byte-level alphabet.
        pieces[id] = (type != TOKEN_CONTROL && in_alphabet) ? raw : t;
        if (!is_added(type) && in_alphabet) by_raw.emplace(raw, (int32_t)id);
    }
    for (int b = 0; b < 256; ++b) {
        auto it = by_raw.find(std::string(1, (char)b));
        if (it == by_raw.end()) {
            fail("tokenizer vocabulary lacks the token for byte 0x%02X; not a byte-level BPE "
                 "vocabulary",
                 b);
        }
        byte_token[b] = it->second;
    }

    merges.reserve(c.merges.size());
    for (size_t r = 0; r < c.merges.size(); ++r) {
        const std::string& mg = c.merges[r];
        size_t sp = mg.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == mg.size() ||
            mg.find(' ', sp + 1) != std::string::npos) {
            fail("tokenizer merge %zu '%s' is not of the form 'left right'", r, mg.c_str());
        }
        std::string left = mg.substr(0, sp), right = mg.substr(sp + 1);
        auto l = by_text.find(left), rr = by_text.find(right), lr = by_text.find(left + right);
        if (l == by_text.end() || rr == by_text.end() || lr == by_text.end()) {
            fail("tokenizer merge %zu '%s' refers to a token not in the vocabulary", r,
                 mg.c_str());
        }
        merges.emplace(pair_key(l->second, rr->second), Merge{(int32_t)r, lr->second});
    }
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::Impl::encode_piece(const std::string& text, size_t begin, size_t end, Scratch& sc,
                                   std::vector<int32_t>& out) const {
    const size_t len = end - begin;
    if (len == 1) {
        out.push_back(byte_token[(uint8_t)text[begin]]);
        return;
    }
    if (pre.ignore_merges) {
        auto it = by_raw.find(text.substr(begin, len));
        if (it != by_raw.end()) {
            out.push_back(it->second);
            return;
        }
    }
    auto& syms = sc.syms;
    auto& heap = sc.heap;
    syms.resize(len);
    heap.clear();
    auto push_pair = [&](int32_t left) {
        int32_t right = syms[left].next;
        if (right < 0) return;
        auto it = merges.find(pair_key(syms[left].id, syms[right].id));
        if (it == merges.end()) return;
        heap.push_back({it->second.rank, left, syms[left].id, syms[right].id, it->second.id});
        std::push_heap(heap.begin(), heap.end());
    };
    for (size_t i = 0; i < len; ++i) {
        syms[i] = {byte_token[(uint8_t)text[begin + i]], (int32_t)i - 1,
                   i + 1 < len ? (int32_t)i + 1 : -1};
    }
    for (size_t i = 0; i + 1 < len; ++i) push_pair((int32_t)i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end());
        Scratch::Cand cand = heap.back();
        heap.pop_back();
        // Stale candidates: a side was merged away or changed since the pair was pushed.
        Scratch::Sym& l = syms[cand.left];
        if (l.id != cand.left_id || l.next < 0) continue;
        Scratch::Sym& r = syms[l.next];
        if (r.id != cand.right_id) continue;
        l.id = cand.merged_id;
        r.id = -1;  // dead; never matches a candidate's id again
        l.next = r.next;
        if (r.next >= 0) syms[r.next].prev = cand.left;
        if (l.prev >= 0) push_pair(l.prev);
        push_pair(cand.left);
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

void Tokenizer::Impl::encode_text(const std::string& text, size_t begin, size_t end, Scratch& sc,
                                  std::vector<int32_t>& out) const {
    if (spm) {
        if (begin == end) return;  // no dummy prefix for the empty text between two added tokens
        bool prefix = cfg.add_space_prefix;
        if (prepend != Prepend::SENTENCEPIECE) {  // Metaspace: not when the text has its space
            prefix = prefix && text[begin] != ' ' && text.compare(begin, 3, "\xE2\x96\x81") != 0;
        }
        if (prepend == Prepend::METASPACE_FIRST) prefix = prefix && begin == 0;
        spm->encode(text, begin, end, prefix, out);
        return;
    }
    sc.ends.clear();
    pretok::split(pre.type, text, begin, end, sc.ends);
    size_t piece_begin = begin;
    for (uint32_t piece_end : sc.ends) {
        encode_piece(text, piece_begin, piece_end, sc, out);
        piece_begin = piece_end;
    }
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos,
                                       bool parse_special) const {
    const Impl& m = *impl_;
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_bos && this->add_bos()) out.push_back(m.cfg.bos);
    Scratch sc;
    size_t seg = 0;  // start of the text not yet tokenized
    for (size_t pos = 0; pos < text.size();) {
        AddedTrie::Match mt = m.added.match(text, pos);
        if (mt.token < 0) {
            ++pos;
            continue;
        }
        // Without parse_special a control token's text stays text, and, as in `tokenizers`
        // (encode_special_tokens), no other added token is searched inside it.
        if (mt.control && !parse_special) {
            pos += mt.len;
            continue;
        }
        m.encode_text(text, seg, pos, sc, out);
        out.push_back(mt.token);
        pos += mt.len;
        seg = pos;
    }
    m.encode_text(text, seg, text.size(), sc, out);
    return out;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
    if (id < 0 || id >= n_vocab()) fail("token id %d is out of range [0, %d)", id, n_vocab());
    return impl_->pieces[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
    std::string out;
    for (int32_t id : ids) out += token_to_piece(id);
    // Hugging Face's Llama decoder ends with Strip(" ", 1, 0): the dummy prefix goes away.
    if (impl_->spm && impl_->cfg.add_space_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
}

int32_t Tokenizer::n_vocab() const { return (int32_t)impl_->cfg.tokens.size(); }
int32_t Tokenizer::bos() const { return impl_->cfg.bos; }
int32_t Tokenizer::eos() const { return impl_->cfg.eos; }
int32_t Tokenizer::eot() const { return impl_->cfg.eot; }
bool Tokenizer::is_eog(int32_t id) const { return impl_->eog.count(id) != 0; }
bool Tokenizer::is_control(int32_t id) const {
    return id >= 0 && id < n_vocab() && impl_->type_of((size_t)id) == TOKEN_CONTROL;
}
bool Tokenizer::add_bos() const { return impl_->cfg.add_bos && impl_->cfg.bos >= 0; }

}  // namespace bitnet
