// The C API (include/bitnet.h) given sizes a caller can get wrong: negative lengths, NULL buffers,
// counts near INT32_MAX, absurd context parameters, logits that are not numbers. Each call must
// return its documented error value with a message in bitnet_last_error(), never overflow, read
// or write out of bounds, or crash. Driven by tests/test_bad_input.py (also in the sanitizer build).
//
//   test_api MODEL   runs every check on MODEL (the minimal model of tests/gguf_craft.py);
//                    prints "ok", or one line per failed check and exits 1
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "bitnet.h"

namespace {

int g_failures = 0;

// Checks that `got` is `want` and that the last error mentions `needle`.
#define CHECK_ERR(got, want, needle) check_err((long long)(got), (long long)(want), needle, __LINE__)

void check_err(long long got, long long want, const char* needle, int line) {
    const char* err = bitnet_last_error();
    if (got != want || !std::strstr(err, needle)) {
        std::printf("%s:%d: got %lld (want %lld), error '%s' (want it to mention '%s')\n", __FILE__,
                    line, got, want, err, needle);
        g_failures++;
    }
}

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            std::printf("%s:%d: check failed: %s (error '%s')\n", __FILE__, __LINE__, #cond, \
                        bitnet_last_error());                                           \
            g_failures++;                                                               \
        }                                                                               \
    } while (0)

void test_tokenizer(bitnet_model* m) {
    bitnet_token out[8];
    char buf[64];
    CHECK(bitnet_tokenize(m, "hi", 2, out, 8, 0, 0) > 0);
    CHECK_ERR(bitnet_tokenize(m, "hi", 2, out, -1, 0, 0), INT32_MIN, "negative");
    CHECK_ERR(bitnet_tokenize(m, "hi", -2, out, 8, 0, 0), INT32_MIN, "negative");
    CHECK_ERR(bitnet_tokenize(m, "hi", 2, nullptr, 8, 0, 0), INT32_MIN, "NULL");
    CHECK_ERR(bitnet_tokenize(m, nullptr, 5, out, 8, 0, 0), INT32_MIN, "NULL");
    CHECK(bitnet_tokenize(m, nullptr, 0, out, 8, 0, 0) == 0);
    CHECK(bitnet_tokenize(m, "hi", 2, nullptr, 0, 0, 0) < 0);  // the count needed

    CHECK(bitnet_token_to_piece(m, 'h', buf, 64) == 1);
    CHECK_ERR(bitnet_token_to_piece(m, 0, buf, -1), INT32_MIN, "negative");
    CHECK_ERR(bitnet_token_to_piece(m, 0, nullptr, 64), INT32_MIN, "NULL");
    CHECK_ERR(bitnet_token_to_piece(m, INT32_MAX, buf, 64), INT32_MIN, "out of range");

    const bitnet_token ids[2] = {0, 1};
    CHECK(bitnet_detokenize(m, ids, 2, buf, 64) == 2);
    CHECK_ERR(bitnet_detokenize(m, ids, 2, buf, -1), INT32_MIN, "negative");
    CHECK_ERR(bitnet_detokenize(m, ids, 2, nullptr, 64), INT32_MIN, "NULL");
    CHECK_ERR(bitnet_detokenize(m, ids, -1, buf, 64), INT32_MIN, "no token ids");
    CHECK(bitnet_model_meta_str(m, nullptr) == nullptr);
}

void test_context_params(bitnet_model* m) {
    bitnet_context_params p = bitnet_context_default_params();
    p.n_ctx = 16;
    p.n_threads = 5000;
    CHECK_ERR(bitnet_context_new(m, p) == nullptr, 1, "n_threads");
    p.n_threads = -1;
    CHECK_ERR(bitnet_context_new(m, p) == nullptr, 1, "negative");
    p.n_threads = 1;
    p.n_batch = INT32_MAX;  // capped at n_ctx
    bitnet_context* c = bitnet_context_new(m, p);
    CHECK(c != nullptr);
    bitnet_context_free(c);
}

void test_decode(bitnet_model* m) {
    bitnet_context_params p = bitnet_context_default_params();
    p.n_ctx = 16;
    p.n_threads = 1;
    bitnet_context* c = bitnet_context_new(m, p);
    CHECK(c != nullptr);
    if (!c) return;
    bitnet_token tok[1] = {1};
    CHECK(bitnet_decode(c, tok, 1, 0) == 0);
    // seq_len + n overflows int32: must be "full", not a read of INT32_MAX tokens from tok.
    CHECK_ERR(bitnet_decode(c, tok, INT32_MAX, 0), -1, "context is full");
    CHECK_ERR(bitnet_decode(c, tok, INT32_MAX - 1, 1), -1, "context is full");
    CHECK_ERR(bitnet_decode(c, nullptr, 1, 0), -1, "no tokens");
    CHECK(bitnet_context_n_past(c) == 1);
    const int32_t seq[1] = {0}, pos[1] = {INT32_MAX};
    CHECK_ERR(bitnet_decode_batch(c, tok, seq, pos, nullptr, 1), -1, "position");
    CHECK(bitnet_get_logits_ith(c, INT32_MIN) == nullptr);
    CHECK(bitnet_get_logits(c, INT32_MIN) == nullptr);
    bitnet_seq_truncate(c, 0, INT32_MIN);
    CHECK(bitnet_context_n_past(c) == 0);
    bitnet_context_free(c);
}

void test_sampler() {
    CHECK_ERR(bitnet_sampler_new(nullptr) == nullptr, 1, "no parameters");
    bitnet_sampler_params p = bitnet_sampler_default_params();
    p.temperature = NAN;
    CHECK_ERR(bitnet_sampler_new(&p) == nullptr, 1, "NaN");
    p = bitnet_sampler_default_params();
    p.repeat_penalty = INFINITY;  // 0 * inf = NaN on every zero logit of a repeated token
    CHECK_ERR(bitnet_sampler_new(&p) == nullptr, 1, "finite");
    p = bitnet_sampler_default_params();
    p.temperature = INFINITY;
    CHECK_ERR(bitnet_sampler_new(&p) == nullptr, 1, "finite");
    p = bitnet_sampler_default_params();
    p.temperature = 0.8f;
    bitnet_sampler* s = bitnet_sampler_new(&p);
    CHECK(s != nullptr);
    if (!s) return;
    CHECK_ERR(bitnet_sampler_sample(s, nullptr, 10), -1, "no logits");
    std::vector<float> logits(10, 0.5f);
    CHECK_ERR(bitnet_sampler_sample(s, logits.data(), 0), -1, "no logits");
    // NaN logits (a broken model) must not reach std::sort or discrete_distribution.
    std::vector<float> nan(100, NAN);
    CHECK(bitnet_sampler_sample(s, nan.data(), 100) == 0);
    for (size_t i = 0; i < nan.size(); i += 2) nan[i] = (float)i;
    const bitnet_token t = bitnet_sampler_sample(s, nan.data(), 100);
    CHECK(t >= 0 && t < 100 && t % 2 == 0);
    nan[7] = INFINITY;
    CHECK(bitnet_sampler_sample(s, nan.data(), 100) == 7);
    const bitnet_token id = 3;
    const float bad = NAN, plus_inf = INFINITY, ok = -INFINITY;
    CHECK_ERR(bitnet_sampler_set_logit_bias(s, &id, &bad, 1), -1, "number");
    CHECK_ERR(bitnet_sampler_set_logit_bias(s, &id, &plus_inf, 1), -1, "number");
    CHECK_ERR(bitnet_sampler_set_logit_bias(s, nullptr, &ok, 1), -1, "bad arrays");
    CHECK_ERR(bitnet_sampler_set_logit_bias(s, &id, &ok, -1), -1, "bad arrays");
    const bitnet_token neg = -1;
    CHECK_ERR(bitnet_sampler_set_logit_bias(s, &neg, &ok, 1), -1, "negative");
    CHECK(bitnet_sampler_set_logit_bias(s, &id, &ok, 1) == 0);
    CHECK(bitnet_sampler_set_logit_bias(s, nullptr, nullptr, 0) == 0);
    bitnet_sampler_free(s);
    p = bitnet_sampler_default_params();
    p.presence_penalty = INFINITY;
    CHECK_ERR(bitnet_sampler_new(&p) == nullptr, 1, "finite");
    p = bitnet_sampler_default_params();
    p.frequency_penalty = NAN;
    CHECK_ERR(bitnet_sampler_new(&p) == nullptr, 1, "finite");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_api MODEL.gguf\n");
        return 2;
    }
    bitnet_model* m = bitnet_model_load(argv[1]);
    if (!m) {
        std::fprintf(stderr, "error: %s\n", bitnet_last_error());
        return 1;
    }
    test_tokenizer(m);
    test_context_params(m);
    test_decode(m);
    test_sampler();
    bitnet_model_free(m);
    if (g_failures) {
        std::printf("%d failure(s)\n", g_failures);
        return 1;
    }
    std::printf("ok\n");
    return 0;
}
