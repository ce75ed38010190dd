// Test driver for the tokenizer: builds a bitnet::Tokenizer from a plain-text vocabulary dump and
// encodes, decodes or benchmarks with it. tests/test_tokenizer.py writes the dump from a Hugging
// Face tokenizer and compares this program's output with `tokenizers`.
//
// Usage:
//   tokenize_driver VOCAB encode STRINGS [--no-special] [--bos]   one line of ids per string
//   tokenize_driver VOCAB decode IDS                              one hex line of bytes per line
//   tokenize_driver VOCAB split STRINGS                           pre-tokenizer piece end offsets
//   tokenize_driver VOCAB bench TEXT                              tokens and MB/s on stderr
//   tokenize_driver VOCAB info                                    n_vocab, bos, eos, eot, eog ids
// VOCAB lines (fields separated by one space; strings hex-encoded so any byte is safe):
//   model <name> | pre <name> | bos|eos|eot|pad|unk <id> | add_bos 0|1 | add_space_prefix 0|1 |
//   prepend_scheme <name> | token <hex> (in id order) | type <n> (in id order; none at all: all
//   normal) | score <float> (in id order) | merge <hex of "left right"> (in rank order)
// STRINGS: one hex-encoded string per line. IDS: space-separated token ids per line.
// Exit status 1 with the error on stderr when the vocabulary is rejected.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"

namespace {

std::string from_hex(const std::string& h) {
    if (h.size() % 2) bitnet::fail("odd-length hex string '%s'", h.c_str());
    std::string out;
    for (size_t i = 0; i < h.size(); i += 2) out += (char)std::stoi(h.substr(i, 2), nullptr, 16);
    return out;
}

std::string to_hex(const std::string& s) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::ifstream open_or_fail(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) bitnet::fail("cannot open '%s'", path.c_str());
    return f;
}

bitnet::TokenizerConfig read_vocab(const std::string& path) {
    bitnet::TokenizerConfig cfg;
    std::ifstream f = open_or_fail(path);
    std::string line;
    while (std::getline(f, line)) {
        std::istringstream ls(line);
        std::string key, a, b;
        ls >> key >> a >> b;
        if (key == "model") cfg.model = a;
        else if (key == "pre") cfg.pre = a;
        else if (key == "bos") cfg.bos = std::stoi(a);
        else if (key == "eos") cfg.eos = std::stoi(a);
        else if (key == "eot") cfg.eot = std::stoi(a);
        else if (key == "pad") cfg.pad = std::stoi(a);
        else if (key == "unk") cfg.unk = std::stoi(a);
        else if (key == "add_space_prefix") cfg.add_space_prefix = a == "1";
        else if (key == "prepend_scheme") cfg.prepend_scheme = a;
        else if (key == "score") cfg.scores.push_back(std::stof(a));
        else if (key == "add_bos") cfg.add_bos = a == "1";
        else if (key == "token") cfg.tokens.push_back(from_hex(a));
        else if (key == "type") cfg.token_types.push_back(std::stoi(a));
        else if (key == "merge") cfg.merges.push_back(from_hex(a));
        else if (!key.empty()) bitnet::fail("%s: unknown line key '%s'", path.c_str(), key.c_str());
    }
    return cfg;
}

template <typename T>
void print_ids(const std::vector<T>& ids) {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line += std::to_string(ids[i]);
    }
    std::puts(line.c_str());
}

int run(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s VOCAB encode|decode|split|bench|info [FILE] [--no-special] [--bos]\n",
                     argv[0]);
        return 2;
    }
    const bitnet::TokenizerConfig cfg = read_vocab(argv[1]);
    bitnet::Tokenizer tok(cfg);
    std::string mode = argv[2];
    bool parse_special = true, add_bos = false;
    for (int i = 4; i < argc; ++i) {
        std::string flag = argv[i];
        if (flag == "--no-special") parse_special = false;
        else if (flag == "--bos") add_bos = true;
        else bitnet::fail("unknown flag '%s'", flag.c_str());
    }
    if (mode == "info") {
        std::printf("n_vocab %d\nbos %d\neos %d\neot %d\nadd_bos %d\neog", tok.n_vocab(),
                    tok.bos(), tok.eos(), tok.eot(), (int)tok.add_bos());
        for (int32_t id = 0; id < tok.n_vocab(); ++id) {
            if (tok.is_eog(id)) std::printf(" %d", id);
        }
        std::printf("\n");
        return 0;
    }
    if (argc < 4) bitnet::fail("mode '%s' needs a file argument", mode.c_str());
    std::ifstream f = open_or_fail(argv[3]);
    std::string line;
    if (mode == "encode") {
        while (std::getline(f, line)) print_ids(tok.encode(from_hex(line), add_bos, parse_special));
    } else if (mode == "split") {
        const bitnet::pretok::PreInfo* pre = bitnet::pretok::find_pre(cfg.pre);
        if (cfg.model != "gpt2" || !pre) bitnet::fail("split needs a byte-level BPE vocabulary");
        while (std::getline(f, line)) {
            std::vector<uint32_t> ends;
            const std::string text = from_hex(line);
            bitnet::pretok::split(pre->type, text, 0, text.size(), ends);
            print_ids(ends);
        }
    } else if (mode == "decode") {
        while (std::getline(f, line)) {
            std::istringstream ls(line);
            std::vector<int32_t> ids;
            for (int32_t id; ls >> id;) ids.push_back(id);
            std::puts(to_hex(tok.decode(ids)).c_str());
        }
    } else if (mode == "bench") {
        std::stringstream ss;
        ss << f.rdbuf();
        const std::string text = ss.str();
        auto t0 = std::chrono::steady_clock::now();
        size_t n_tokens = tok.encode(text, false, true).size();
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "%zu bytes -> %zu tokens in %.3f s: %.2f MB/s\n", text.size(),
                     n_tokens, s, text.size() / s / 1e6);
    } else {
        bitnet::fail("unknown mode '%s' (encode, decode, split, bench, info)", mode.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const bitnet::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
