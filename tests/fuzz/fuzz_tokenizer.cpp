// libFuzzer harness: the tokenizer on arbitrary bytes, with the vocabularies of the seed models
// (byte-level BPE with the Llama-3 and Falcon pre-tokenizers, SentencePiece BPE). The first input
// byte picks the model and the flags (add_bos, parse_special), the rest is the text. Checked:
// every id is in the vocabulary; without special-token parsing or BOS, decode(encode(text)) gives
// the text back byte for byte (the tokenizer's contract, ill-formed UTF-8 included); decoding the
// same bytes read as token ids (some out of range) gives text or an error, never a crash.
//
// The models are every *.gguf under BITNET_FUZZ_MODEL_DIR (the seed corpus of fuzz_model) that
// loads; an empty directory is a setup error, not a pass.
#include <dirent.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "fuzz_common.h"

namespace {

// Freed at exit, before LeakSanitizer's final check.
struct Models {
    std::vector<bitnet_model*> v;
    ~Models() {
        for (bitnet_model* m : v) bitnet_model_free(m);
    }
} g_models;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* env = std::getenv("BITNET_FUZZ_MODEL_DIR");
    const std::string dir = env ? env : BITNET_FUZZ_MODEL_DIR_DEFAULT;
    DIR* d = opendir(dir.c_str());
    std::vector<std::string> names;
    if (d) {
        while (const dirent* e = readdir(d)) {
            const std::string n = e->d_name;
            if (n.size() > 5 && n.compare(n.size() - 5, 5, ".gguf") == 0) names.push_back(n);
        }
        closedir(d);
    }
    // Sorted, so the first byte means the same model on every machine.
    std::sort(names.begin(), names.end());
    for (const std::string& n : names)
        if (bitnet_model* m = bitnet_model_load((dir + "/" + n).c_str())) g_models.v.push_back(m);
    if (g_models.v.empty()) {
        std::fprintf(stderr, "fuzz_tokenizer: no model loads from %s (set BITNET_FUZZ_MODEL_DIR)\n",
                     dir.c_str());
        std::exit(1);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const bitnet_model* m = g_models.v[data[0] % g_models.v.size()];
    const bool add_bos = data[0] & 0x40, special = data[0] & 0x80;
    const char* text = (const char*)data + 1;
    const int32_t len = (int32_t)size - 1;
    const int32_t n_vocab = bitnet_model_n_vocab(m);

    const int32_t need = bitnet_tokenize(m, text, len, nullptr, 0, add_bos, special);
    if (need == INT32_MIN) fuzz::fail("tokenize refused valid arguments");
    std::vector<bitnet_token> ids(need < 0 ? -need : 0);
    if (!ids.empty()) {
        const int32_t n = bitnet_tokenize(m, text, len, ids.data(), (int32_t)ids.size(), add_bos,
                                          special);
        if (n != (int32_t)ids.size()) fuzz::fail("tokenize gave another count the second time");
    }
    for (bitnet_token t : ids)
        if (t < 0 || t >= n_vocab) fuzz::fail("tokenize gave an id outside the vocabulary");

    const int32_t text_size = bitnet_detokenize(m, ids.data(), (int32_t)ids.size(), nullptr, 0);
    if (text_size == INT32_MIN) fuzz::fail("detokenize of tokenize's own ids failed");
    std::vector<char> out((size_t)std::max(-text_size, 0));
    const int32_t got = bitnet_detokenize(m, ids.data(), (int32_t)ids.size(), out.data(),
                                          (int32_t)out.size());
    if (got != (int32_t)out.size()) fuzz::fail("detokenize gave another size the second time");
    if (!add_bos && !special && std::string(out.begin(), out.end()) != std::string(text, (size_t)len))
        fuzz::fail("decode(encode(text)) != text");

    // The text read as token ids, spread over [-1, n_vocab]: both ends are invalid.
    std::vector<bitnet_token> raw((size_t)len / 2);
    for (size_t i = 0; i < raw.size(); ++i) {
        const uint16_t v = (uint16_t)(data[1 + 2 * i] | data[2 + 2 * i] << 8);
        raw[i] = (int32_t)(v % (uint32_t)(n_vocab + 2)) - 1;
    }
    const int32_t r = bitnet_detokenize(m, raw.data(), (int32_t)raw.size(), nullptr, 0);
    const bool any_bad = std::any_of(raw.begin(), raw.end(),
                                     [&](bitnet_token t) { return t < 0 || t >= n_vocab; });
    if (any_bad != (r == INT32_MIN)) fuzz::fail("detokenize misjudged the validity of the ids");
    for (bitnet_token t : raw) {
        char piece[8];
        const int32_t p = bitnet_token_to_piece(m, t, piece, (int32_t)sizeof piece);
        if ((t < 0 || t >= n_vocab) != (p == INT32_MIN))
            fuzz::fail("token_to_piece misjudged the validity of an id");
    }
    return 0;
}
