/*
 * bitnet.h: the public C API of the engine. Every tool (bitnet-cli, ...) and the Python bindings
 * use only this header.
 *
 * Conventions: functions that can fail return NULL or a negative number and leave a one-line
 * message in bitnet_last_error() (per thread). Objects come in _new/_load and _free pairs.
 * Nothing here prints, except progress the caller asks for. Every length is checked: a negative
 * length, or a NULL buffer with a positive length, is an error, never a read or write.
 */
#ifndef BITNET_H
#define BITNET_H

#include <stdbool.h>
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

typedef struct bitnet_model_params {
    int32_t use_mmap; /* 1 (default): map the file. A fast start (pages are read as they are first
                       * used, and shared with the page cache), but the file must not change while
                       * the model is loaded: truncating it kills the process with SIGBUS, and
                       * bytes rewritten in place change the weights. 0: read the file into private
                       * memory at load (a slower start); the file may then change or go away. */
} bitnet_model_params;

BITNET_API bitnet_model_params bitnet_model_default_params(void);
/* Loads a GGUF file. NULL on error. */
BITNET_API bitnet_model* bitnet_model_load_with_params(const char* path, bitnet_model_params params);
/* bitnet_model_load_with_params with the default params (memory-mapped). */
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
/* Non-zero for control tokens (BOS, EOS, <|eot_id|>, ...), which tools leave out of the text they
 * show unless asked (llama.cpp's --special); 0 for other tokens and invalid ids. */
BITNET_API int bitnet_token_is_control(const bitnet_model* model, bitnet_token token);

/* Tokenizes text[0..text_len). Returns the number of tokens written to out; when n_max is too
 * small, returns -(number needed) and writes nothing (out may be NULL when n_max is 0).
 * INT32_MIN on error (also for a negative text_len or n_max). add_bos: prepend BOS
 * when the vocabulary asks for it. parse_special: match special tokens' text. */
BITNET_API int32_t bitnet_tokenize(const bitnet_model* model, const char* text, int32_t text_len,
                                   bitnet_token* out, int32_t n_max, int add_bos,
                                   int parse_special);
/* Raw bytes of one token into buf (not NUL-terminated). Returns the byte count, -(needed) when
 * len is too small, INT32_MIN for an invalid token. */
BITNET_API int32_t bitnet_token_to_piece(const bitnet_model* model, bitnet_token token, char* buf,
                                         int32_t len);
/* The text of ids[0..n) into buf (UTF-8 bytes, not NUL-terminated), as Hugging Face's decode
 * gives it (for SentencePiece vocabularies the leading space of the first piece is dropped, so
 * this can differ from concatenated pieces); special tokens are written as their text. Returns
 * the byte count, -(needed) when len is too small (nothing written), INT32_MIN for an invalid
 * token id. */
BITNET_API int32_t bitnet_detokenize(const bitnet_model* model, const bitnet_token* ids, int32_t n,
                                     char* buf, int32_t len);

/* ---- context: KV cache and forward pass ------------------------------------------------- */

/* A context holds n_seq_max independent sequences ("slots", ids 0 .. n_seq_max-1), each with its
 * own KV cache of n_ctx positions and its own length. The one-sequence calls (bitnet_decode,
 * n_past, truncate) act on sequence 0. */
typedef struct bitnet_context_params {
    int32_t n_ctx;     /* KV cache length in tokens, per sequence; 0 = the model's training context,
                        * at most 4096 (BITNET_DEFAULT_CTX_MAX) */
    int32_t n_threads; /* 0 = bitnet_default_n_threads(); more than bitnet_max_n_threads() fails */
    int32_t n_batch;   /* most tokens per forward pass; 0 = 512 */
    int32_t n_seq_max; /* sequence slots; 0 = 1. The KV cache takes n_seq_max times the memory */
    int32_t type_k;    /* KV cache type of the keys: BITNET_KV_F32 (default), BITNET_KV_F16, BITNET_KV_Q8_0 */
    int32_t type_v;    /* ... and of the values */
    int32_t flash_attn; /* 1 (default): tiled attention (online softmax, any cache type); 0: the exact
                         * attention, torch's summation order (bit-exact with transformers' float32
                         * eager attention), which needs f32 keys and values */
    int32_t exact_output; /* 0 (default): certified output where the model has a compact copy of
                           * its output matrix (bitnet_model_output_compact), see below;
                           * 1: every logit from the exact output matrix */
    int32_t certified_top_k; /* certified output: how many of the top rows are guaranteed exact;
                              * 0 = 1 (greedy). Set it to the sampler's top_k for exact top-k
                              * sampling */
} bitnet_context_params;

/* The largest context n_ctx = 0 gives. */
#define BITNET_DEFAULT_CTX_MAX 4096

/* KV cache types (their ggml type ids). */
enum { BITNET_KV_F32 = 0, BITNET_KV_F16 = 1, BITNET_KV_Q8_0 = 8 };

BITNET_API bitnet_context_params bitnet_context_default_params(void);
BITNET_API bitnet_context* bitnet_context_new(bitnet_model* model, bitnet_context_params params);
BITNET_API void bitnet_context_free(bitnet_context* ctx);
BITNET_API int32_t bitnet_context_n_ctx(const bitnet_context* ctx);
BITNET_API int32_t bitnet_context_n_threads(const bitnet_context* ctx);
/* The CPUs this process may use: its affinity mask (taskset), capped by its cgroup CPU quota
 * rounded up; at least 1. The thread count n_threads = 0 gives, and the most that run in parallel. */
BITNET_API int32_t bitnet_default_n_threads(void);
/* The most threads a context accepts: 4 x bitnet_default_n_threads(), at most 1024. */
BITNET_API int32_t bitnet_max_n_threads(void);
BITNET_API int32_t bitnet_context_n_seq_max(const bitnet_context* ctx);
/* Certified output. A model whose output matrix is F16/F32 gets, at load time, a compact copy
 * (Q6_K, or Q4_0 when rows are not a multiple of 256; BITNET_OUTPUT_COMPACT = auto | off | q6_k
 * | q4_0 | q8_0 chooses) and each row's error norm. A context then scores every token through the
 * compact copy and rescores exactly (the exact matrix, the exact path's kernel: the same bits)
 * every row that can be among the exact top certified_top_k; no other row can be. So a logits row
 * from bitnet_get_logits holds, in that case: the exact logits, bit for bit, of every row that can
 * be in the exact top certified_top_k (always including the exact top certified_top_k itself), and
 * the compact copy's approximation, provably below those, for every other row. Its argmax, and
 * its top k for k <= certified_top_k, are those of the exact logits. Set exact_output for exact
 * logits everywhere (perplexity, log-probabilities of arbitrary tokens). */
/* The compact type of the model's output matrix ("Q6_K", "Q4_0", "Q8_0"), NULL when it has none. */
BITNET_API const char* bitnet_model_output_compact(const bitnet_model* model);
/* Tokens this context scored through the compact copy, and rows it rescored exactly for them. */
BITNET_API void bitnet_context_output_stats(const bitnet_context* ctx, int64_t* n_tokens,
                                            int64_t* n_rescored);

/* Tokens currently in the KV cache of sequence 0. */
BITNET_API int32_t bitnet_context_n_past(const bitnet_context* ctx);
/* Drops sequence 0's cached tokens from position n_keep on (0 clears it), and the logits of the
 * last decode call. */
BITNET_API void bitnet_context_truncate(bitnet_context* ctx, int32_t n_keep);

/* Runs tokens[0..n) of sequence 0 at positions n_past, n_past+1, ... and appends them to its KV
 * cache (in chunks of n_batch). With logits_all, logits are kept for every token; otherwise only
 * for the last one. Returns 0, or -1 on error (context full, invalid token). */
BITNET_API int bitnet_decode(bitnet_context* ctx, const bitnet_token* tokens, int32_t n,
                             int logits_all);
/* Logits (n_vocab floats) of token i of the last decode call (bitnet_decode or
 * bitnet_decode_batch); i = -1 is the last token. NULL when that token's logits were not kept
 * (or i < -1).
 * Valid until the next decode or truncate call. */
BITNET_API const float* bitnet_get_logits(bitnet_context* ctx, int32_t i);

/* Runs a batch of n tokens of any sequences: token i belongs to sequence seq_ids[i] at position
 * positions[i], and its logits are kept when want_logits[i] is non-zero (want_logits may be NULL:
 * only token n-1). One forward pass (per n_batch tokens) serves every sequence of the batch: each
 * weight matrix is read once for all of them. Within a sequence the positions must continue its
 * cache with no gap: its first token in the batch at bitnet_seq_length(seq), the next one at +1,
 * and so on (tokens of different sequences may interleave). A token attends to its own sequence
 * only; per sequence, the results are those bitnet_decode would give on that sequence alone in the
 * same chunks. The whole batch is checked before anything runs: returns 0, or -1 with nothing
 * changed and bitnet_last_error() naming the token (sequence id out of range, position not
 * contiguous, the sequence's context full, token id outside the vocabulary). */
BITNET_API int32_t bitnet_decode_batch(bitnet_context* ctx, const bitnet_token* tokens,
                                       const int32_t* seq_ids, const int32_t* positions,
                                       const int8_t* want_logits, int32_t n);
/* Logits (n_vocab floats) of token i (its index in the last batch) of the last decode call, or
 * NULL (and bitnet_last_error) when i is out of range or that token did not ask for logits.
 * Valid until the next decode or truncate call. */
BITNET_API const float* bitnet_get_logits_ith(bitnet_context* ctx, int32_t i);

/* Tokens in the KV cache of sequence seq; -1 (and bitnet_last_error) for an invalid seq. */
BITNET_API int32_t bitnet_seq_length(const bitnet_context* ctx, int32_t seq);
/* Empties sequence seq (its next token goes to position 0); no other sequence is touched.
 * An invalid seq is ignored (and reported in bitnet_last_error). */
BITNET_API void bitnet_seq_clear(bitnet_context* ctx, int32_t seq);
/* Keeps the first n_keep tokens of sequence seq (n_keep <= 0 clears it; larger than its length:
 * no change). An invalid seq is ignored (and reported in bitnet_last_error). */
BITNET_API void bitnet_seq_truncate(bitnet_context* ctx, int32_t seq, int32_t n_keep);

/* Embeddings (embedding models such as bitnet-embedding-0.6b; no output layer runs).
 * The model's pooling, llama.cpp's numbering: 0 none (not an embedding model), 1 mean, 2 cls,
 * 3 last token. */
BITNET_API int32_t bitnet_model_pooling_type(const bitnet_model* model);
/* Embeds n_texts texts, text t being n_tokens[t] tokens of `tokens` (concatenated), into out
 * (n_texts * bitnet_model_n_embd floats): the final-norm hidden states pooled (pooling -1: the
 * model's), L2-normalized when normalize != 0. The texts run bitnet_context_n_seq_max at a time
 * as separate sequences in shared batches; every sequence must be empty before the call and is
 * empty after it (no KV is kept between texts). Include the model's end token yourself where it
 * pools the last one (bitnet-embedding appends <|endoftext|>). 0 on success, -1 on error
 * (bitnet_last_error). */
BITNET_API int32_t bitnet_embed(bitnet_context* ctx, const bitnet_token* tokens, const int32_t* n_tokens,
                                int32_t n_texts, int32_t pooling, int32_t normalize, float* out);

/* ---- sampling ------------------------------------------------------------------------- */

typedef struct bitnet_sampler_params {
    float temperature;    /* <= 0: greedy */
    int32_t top_k;        /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;
    uint64_t seed;
    /* OpenAI's penalties (0: off), over the last repeat_last_n tokens: a token seen c times
     * there loses c * frequency_penalty + presence_penalty from its logit. */
    float presence_penalty;
    float frequency_penalty;
} bitnet_sampler_params;

BITNET_API bitnet_sampler_params bitnet_sampler_default_params(void);
BITNET_API bitnet_sampler* bitnet_sampler_new(const bitnet_sampler_params* params);
BITNET_API void bitnet_sampler_free(bitnet_sampler* sampler);
/* Records a token (prompt or generated) for the repetition penalty. */
BITNET_API void bitnet_sampler_accept(bitnet_sampler* sampler, bitnet_token token);
BITNET_API void bitnet_sampler_reset(bitnet_sampler* sampler);
/* Adds bias[i] to the logit of ids[i] before the penalties and cuts (-INFINITY bans the token);
 * replaces any earlier bias, n = 0 clears it. Ids past the vocabulary are ignored (a sampler does
 * not know its model). 0, or -1 (and bitnet_last_error) for n < 0, NULL arrays, a negative id, or
 * a bias that is NaN or +inf. */
BITNET_API int bitnet_sampler_set_logit_bias(bitnet_sampler* sampler, const bitnet_token* ids,
                                             const float* bias, int32_t n);
/* Picks the next token from logits[0..n_vocab) (not modified). Does not accept it. NaN logits
 * count as -inf; when no logit is finite, the first largest one is taken. -1 (and
 * bitnet_last_error) when logits is NULL or n_vocab <= 0. */
BITNET_API bitnet_token bitnet_sampler_sample(bitnet_sampler* sampler, const float* logits,
                                              int32_t n_vocab);

/* ---- speculative decoding ------------------------------------------------------------- */

/* A drafter guesses the next tokens of one sequence; one batched forward pass verifies the pending
 * token and the guesses, and the sampler's chain decides which guesses stay, so that the tokens
 * are exactly those (greedy) or distributed exactly as (sampling) plain decoding's. */
typedef struct bitnet_spec bitnet_spec;

enum {
    BITNET_SPEC_OFF = 0,
    BITNET_SPEC_NGRAM = 1,  /* lookup of the last n-gram in the prompt and generated text */
    BITNET_SPEC_DRAFT = 2,  /* a draft model with the same vocabulary */
    BITNET_SPEC_REPLAY = 3  /* for benchmarks: a recorded sequence with a set fraction of errors */
};

typedef struct bitnet_spec_params {
    int32_t mode;          /* BITNET_SPEC_* */
    int32_t draft_max;     /* most guesses per step (default 16) */
    int32_t draft_min;     /* fewer guesses than this are not verified (default 0) */
    float draft_p_min;     /* draft model: stop guessing below this top probability (default 0.75) */
    int32_t ngram_min;     /* n-gram sizes tried, longest first (default 2 .. 4) */
    int32_t ngram_max;
    bitnet_model* draft_model;  /* BITNET_SPEC_DRAFT: not owned; must outlive the bitnet_spec */
    int32_t draft_n_threads;    /* draft model's threads; 0 = those of the target context */
    const bitnet_token* replay_tokens; /* BITNET_SPEC_REPLAY: the sequence from position 0 (copied) */
    int32_t n_replay;
    float replay_error;    /* probability that a replayed token is replaced by a wrong one */
    uint64_t seed;         /* replay errors; draws of a sampling draft model */
} bitnet_spec_params;

typedef struct bitnet_spec_stats {
    int64_t steps;     /* verification forward passes */
    int64_t drafted;   /* guesses verified */
    int64_t accepted;  /* guesses kept */
    int64_t generated; /* tokens produced (kept guesses plus one per step) */
} bitnet_spec_stats;

BITNET_API bitnet_spec_params bitnet_spec_default_params(void);
/* A speculator for one sequence of contexts like target_ctx (a draft model gets a context of the
 * same length). NULL on error, e.g. a draft model whose vocabulary differs from target's. */
BITNET_API bitnet_spec* bitnet_spec_new(const bitnet_model* target, const bitnet_context* target_ctx,
                                        const bitnet_spec_params* params, const bitnet_sampler* sampler);
BITNET_API void bitnet_spec_free(bitnet_spec* spec);

/* One step on sequence seq. history[0..n_history) is the whole sequence (prompt and generated
 * tokens); its last token is the pending one, sampled but not yet decoded: the sequence's cache
 * must hold exactly the n_history - 1 before it. Drafts, decodes the pending token and the guesses
 * in one batch, writes the kept guesses plus one next token to out (at least 1, at most
 * n_out_max tokens; each recorded in sampler), and leaves the cache holding the pending token and
 * the kept guesses (the last token written is the new pending one). Tokens after an
 * end-of-generation token in out are the caller's to drop. Returns the count written, or -1. */
BITNET_API int32_t bitnet_spec_step(bitnet_spec* spec, bitnet_context* ctx, int32_t seq,
                                    bitnet_sampler* sampler, const bitnet_token* history,
                                    int32_t n_history, bitnet_token* out, int32_t n_out_max);

/* The two halves of a step, for callers that verify several sequences in one batch:
 * bitnet_spec_draft writes up to n_max guesses to follow history[0..n_history) into out and
 * returns their count k. The caller decodes the pending token and the k guesses as consecutive
 * tokens first .. first+k of one bitnet_decode_batch (logits for each) and calls
 * bitnet_spec_verify, which writes the kept guesses plus one token to out (room for k + 1) and
 * returns that count (-1 on error); the caller then truncates the sequence to n_history plus the
 * number of kept guesses (the returned count minus one). */
BITNET_API int32_t bitnet_spec_draft(bitnet_spec* spec, const bitnet_token* history,
                                     int32_t n_history, bitnet_token* out, int32_t n_max);
BITNET_API int32_t bitnet_spec_verify(bitnet_spec* spec, bitnet_context* ctx, int32_t first,
                                      bitnet_sampler* sampler, bitnet_token* out);

BITNET_API bitnet_spec_stats bitnet_spec_get_stats(const bitnet_spec* spec);

/* ---- chat templates ------------------------------------------------------------------- */

/* One message of a conversation; both strings are UTF-8 and NUL-terminated. */
typedef struct bitnet_chat_message {
    const char* role; /* "system", "user" or "assistant" */
    const char* content;
} bitnet_chat_message;

/* Names of the built-in chat templates, comma-separated: "bitnet, llama3, falcon3, chatml". */
BITNET_API const char* bitnet_chat_template_names(void);
/* The built-in template recognized in the model's tokenizer.chat_template ("bitnet", "llama3",
 * ...), or NULL when the model has no template or one that matches none of them. */
BITNET_API const char* bitnet_chat_template_name(const bitnet_model* model);

/* Renders msgs[0..n_msgs) as the prompt text the model was trained on, exactly as Hugging Face's
 * apply_chat_template renders it with the model's template; with add_assistant the text that
 * opens the assistant's reply is appended. tmpl: a built-in name, a Jinja template text to
 * recognize, or NULL for the model's own template. The text holds special tokens (BOS where the
 * template writes it): tokenize it with parse_special and without add_bos.
 * Returns the length of the whole text in bytes and copies min(length, buf_len) bytes into buf,
 * NUL-terminated when length < buf_len (call again with length + 1 bytes when it did not fit;
 * buf may be NULL when buf_len is 0). Returns -1 when the template is unknown or the model has
 * none (the message names --chat-template and the built-in names) or a message is NULL. */
BITNET_API int32_t bitnet_chat_apply(const bitnet_model* model, const char* tmpl,
                                     const bitnet_chat_message* msgs, size_t n_msgs,
                                     bool add_assistant, char* buf, int32_t buf_len);

#ifdef __cplusplus
}
#endif

#endif /* BITNET_H */
