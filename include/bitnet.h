/*
 * bitnet.h: the public C API of the engine. Every tool (bitnet-cli, ...) and the Python bindings
 * use only this header.
 *
 * Conventions: functions that can fail return NULL or a negative number and leave a one-line
 * message in bitnet_last_error() (per thread). Objects come in _new/_load and _free pairs.
 * Nothing here prints, except progress the caller asks for.
 */
#ifndef BITNET_H
#define BITNET_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define BITNET_API __declspec(dllexport)
#else
#define BITNET_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t bitnet_token;
typedef struct bitnet_model bitnet_model;
typedef struct bitnet_context bitnet_context;
typedef struct bitnet_sampler bitnet_sampler;

/* Message of the last failure on this thread ("" when none). */
BITNET_API const char* bitnet_last_error(void);
/* Kernel set chosen for this CPU: "scalar", "avx2", "avx512vnni". */
BITNET_API const char* bitnet_isa(void);

/* ---- model ---------------------------------------------------------------------------- */

/* Loads a GGUF file (memory-mapped). NULL on error. */
BITNET_API bitnet_model* bitnet_model_load(const char* path);
BITNET_API void bitnet_model_free(bitnet_model* model);

BITNET_API int32_t bitnet_model_n_vocab(const bitnet_model* model);
BITNET_API int32_t bitnet_model_n_ctx_train(const bitnet_model* model);
BITNET_API int32_t bitnet_model_n_embd(const bitnet_model* model);
BITNET_API int32_t bitnet_model_n_layer(const bitnet_model* model);
BITNET_API uint64_t bitnet_model_n_params(const bitnet_model* model);
/* Bytes of tensor data in the file. */
BITNET_API uint64_t bitnet_model_size(const bitnet_model* model);
/* Short description, e.g. "bitnet-b1.58 2.4B I2_S". Valid while the model lives. */
BITNET_API const char* bitnet_model_desc(const bitnet_model* model);
/* A string metadata value (e.g. "tokenizer.chat_template"), or NULL when absent. */
BITNET_API const char* bitnet_model_meta_str(const bitnet_model* model, const char* key);

/* ---- tokenizer ------------------------------------------------------------------------ */

BITNET_API bitnet_token bitnet_token_bos(const bitnet_model* model);
BITNET_API bitnet_token bitnet_token_eos(const bitnet_model* model);
BITNET_API bitnet_token bitnet_token_eot(const bitnet_model* model);  /* -1 when none */
/* Non-zero for tokens that end generation (eos, eot, ...). */
BITNET_API int bitnet_token_is_eog(const bitnet_model* model, bitnet_token token);

/* Tokenizes text[0..text_len). Returns the number of tokens written to out; when n_max is too
 * small, returns -(number needed) and writes nothing. INT32_MIN on error. add_bos: prepend BOS
 * when the vocabulary asks for it. parse_special: match special tokens' text. */
BITNET_API int32_t bitnet_tokenize(const bitnet_model* model, const char* text, int32_t text_len,
                                   bitnet_token* out, int32_t n_max, int add_bos,
                                   int parse_special);
/* Raw bytes of one token into buf (not NUL-terminated). Returns the byte count, -(needed) when
 * len is too small, INT32_MIN for an invalid token. */
BITNET_API int32_t bitnet_token_to_piece(const bitnet_model* model, bitnet_token token, char* buf,
                                         int32_t len);

/* ---- context: KV cache and forward pass ------------------------------------------------- */

typedef struct bitnet_context_params {
    int32_t n_ctx;     /* KV cache length in tokens; 0 = the model's training context */
    int32_t n_threads; /* 0 = all cores */
    int32_t n_batch;   /* most tokens per forward pass; 0 = 512 */
} bitnet_context_params;

BITNET_API bitnet_context_params bitnet_context_default_params(void);
BITNET_API bitnet_context* bitnet_context_new(bitnet_model* model, bitnet_context_params params);
BITNET_API void bitnet_context_free(bitnet_context* ctx);
BITNET_API int32_t bitnet_context_n_ctx(const bitnet_context* ctx);
BITNET_API int32_t bitnet_context_n_threads(const bitnet_context* ctx);
/* Tokens currently in the KV cache. */
BITNET_API int32_t bitnet_context_n_past(const bitnet_context* ctx);
/* Drops cached tokens from position n_keep on (0 clears the cache). */
BITNET_API void bitnet_context_truncate(bitnet_context* ctx, int32_t n_keep);

/* Runs tokens[0..n) at positions n_past, n_past+1, ... and appends them to the KV cache (in
 * chunks of n_batch). With logits_all, logits are kept for every token; otherwise only for the
 * last one. Returns 0, or -1 on error (context full, invalid token). */
BITNET_API int bitnet_decode(bitnet_context* ctx, const bitnet_token* tokens, int32_t n,
                             int logits_all);
/* Logits (n_vocab floats) of token i of the last bitnet_decode call; i = -1 is the last token.
 * NULL when that token's logits were not kept. */
BITNET_API const float* bitnet_get_logits(bitnet_context* ctx, int32_t i);

/* ---- sampling ------------------------------------------------------------------------- */

typedef struct bitnet_sampler_params {
    float temperature;    /* <= 0: greedy */
    int32_t top_k;        /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;
    uint64_t seed;
} bitnet_sampler_params;

BITNET_API bitnet_sampler_params bitnet_sampler_default_params(void);
BITNET_API bitnet_sampler* bitnet_sampler_new(const bitnet_sampler_params* params);
BITNET_API void bitnet_sampler_free(bitnet_sampler* sampler);
/* Records a token (prompt or generated) for the repetition penalty. */
BITNET_API void bitnet_sampler_accept(bitnet_sampler* sampler, bitnet_token token);
BITNET_API void bitnet_sampler_reset(bitnet_sampler* sampler);
/* Picks the next token from logits[0..n_vocab) (not modified). Does not accept it. */
BITNET_API bitnet_token bitnet_sampler_sample(bitnet_sampler* sampler, const float* logits,
                                              int32_t n_vocab);

#ifdef __cplusplus
}
#endif

#endif /* BITNET_H */
