// The engine's tokenizer, exact with Hugging Face `tokenizers` for the same vocabulary:
//  - byte-level BPE (tokenizer.ggml.model "gpt2": GPT-2 / Llama-3 / Falcon3 pre-tokenizers,
//    merges), implemented in tokenizer.cpp;
//  - SentencePiece BPE (model "llama": Llama-2 vocabularies with scores, byte fallback and the "▁"
//    space rules), the merge stage in spm.cpp; also exact with the `sentencepiece` package.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bitnet {

class GGUFFile;

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
    std::string model = "gpt2";       // tokenizer.ggml.model: "gpt2" or "llama"
    std::string pre = "llama-bpe";    // tokenizer.ggml.pre (gpt2 only)
    // gpt2: byte-level strings (GPT-2 byte-to-unicode alphabet); llama: SentencePiece pieces
    // ("▁" for a space, "<0xXX>" byte tokens).
    std::vector<std::string> tokens;
    std::vector<int32_t> token_types; // same length as tokens, or empty (all normal)
    std::vector<std::string> merges;  // gpt2: "left right", highest priority first
    std::vector<float> scores;        // llama: merge priority of each token, higher first
    int32_t bos = -1, eos = -1, eot = -1, pad = -1, unk = -1;
    bool add_bos = true;
    // llama: prepend "▁" to text (SentencePiece's dummy prefix), following prepend_scheme:
    //  "sentencepiece" (sentencepiece, llama.cpp, legacy Hugging Face files): every run of text
    //      between added tokens;
    //  "metaspace-always" (Hugging Face's Metaspace pre-tokenizer): every run that does not
    //      already start with a space;
    //  "metaspace-first": only the run at the start of the input, if it does not start with one.
    bool add_space_prefix = true;
    std::string prepend_scheme = "sentencepiece";
};

class Tokenizer {
public:
    // Throws bitnet::Error for an unsupported model or pre-tokenizer, or inconsistent tables.
    explicit Tokenizer(TokenizerConfig cfg);
    ~Tokenizer();

    // Encodes UTF-8 text. With parse_special, the text of control/user-defined/unknown tokens is
    // matched and emitted as those tokens (Hugging Face's default); with add_bos the BOS token is
    // prepended when the vocabulary asks for it. Ill-formed UTF-8 is kept byte for byte, so
    // decode(encode(x)) == x for any bytes: byte-level BPE splits each bad byte as if it were
    // U+FFFD; SentencePiece makes it a character of its own, emitted as its <0xXX> token (where
    // the `sentencepiece` package would substitute U+FFFD).
    std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const;

    // Raw bytes of one token (special tokens give their text; SentencePiece: "▁" -> " ", byte
    // tokens -> their byte). Throws for an id out of range.
    std::string token_to_piece(int32_t id) const;
    // The concatenated pieces, as Hugging Face decodes with skip_special_tokens=False; with a
    // SentencePiece dummy prefix, one leading space is dropped (the prefix the encoder added).
    // Ill-formed UTF-8 from byte tokens stays raw (Hugging Face shows it as U+FFFD).
    std::string decode(const std::vector<int32_t>& ids) const;

    int32_t n_vocab() const;
    int32_t bos() const;
    int32_t eos() const;
    int32_t eot() const;
    // End of generation: eos, eot, or another control token such as <|end_of_text|>/<|eom_id|>.
    bool is_eog(int32_t id) const;
    // A control token (BOS, EOS, <|eot_id|>, ...): markup for the model, not text for a reader.
    bool is_control(int32_t id) const;
    bool add_bos() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The tokenizer described by a GGUF file's tokenizer.ggml.* keys. Throws bitnet::Error naming
// the file for an unsupported tokenizer model or inconsistent tables.
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GGUFFile& f);

}  // namespace bitnet
