// bitnet-cli: text completion or chat with a GGUF model. Uses only the public C API
// (include/bitnet.h).
//
// Completion: prints the prompt, streams the generated text to stdout as tokens come, and prints
// prompt and generation speed to stderr at the end.
//
// Chat (-cnv): -p is the system prompt; each line read from stdin is a user turn, answered in a
// stream. The conversation is rendered whole with the model's chat template and tokenized at every
// turn; only the tokens past the longest prefix already in the KV cache are evaluated, so the
// model sees exactly the tokens a fresh run of the whole conversation would give it, while the
// cache is reused across turns. When the conversation outgrows the context, its oldest turns are
// dropped (the system prompt is kept) and what remains is evaluated again. Ctrl-C (SIGINT) stops
// an answer and returns to the prompt; Ctrl-C at the prompt, end of input or /exit ends the chat.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bitnet.h"
#include "tools/tool_common.h"

namespace {

using tool::die;
using tool::now_s;
using tool::parse_int;
using tool::parse_float;

struct Args {
    std::string model;
    std::string prompt;
    int n_predict = 128;
    int n_threads = 0;
    int n_ctx = 0;
    int n_batch = 512;
    float temp = 0.8f;
    int top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float repeat_penalty = 1.0f;
    int repeat_last_n = 64;
    long long seed = -1;
    bool ignore_eos = false;
    bool special = false;
    bool display_prompt = true;
    bool conversation = false;
    std::string chat_template;  // empty: the model's own
    tool::CacheArgs cache;
    bool use_mmap = true;
    // Speculative decoding (completion only).
    std::string spec = "off";  // off | ngram | draft
    std::string model_draft;
    int draft_max = 16;
    int draft_min = 0;
    float draft_p_min = 0.75f;
    int ngram_min = 2;
    int ngram_max = 4;
};

void usage(FILE* out) {
    std::fprintf(out,
        "usage: bitnet-cli -m MODEL.gguf -p PROMPT [options]\n"
        "       bitnet-cli -m MODEL.gguf -cnv [-p SYSTEM_PROMPT] [options]\n"
        "  -m, --model FILE        GGUF model\n"
        "  -p, --prompt TEXT       prompt (with -cnv: the system prompt)\n"
        "  -n, --n-predict N       tokens to generate, per answer with -cnv (default 128;\n"
        "                          -1 = until end of text or full context)\n"
        "  -t, --threads N         threads (default: the usable CPUs)\n"
        "  -c, --ctx-size N        context size in tokens (default 0: the model's training context,\n"
        "                          at most 4096)\n"
        "  -b, --batch-size N      tokens per forward pass for the prompt (default 512)\n"
        "      --temp T            temperature (default 0.8; 0 = greedy)\n"
        "      --top-k N           top-k (default 40, 0 = off)\n"
        "      --top-p P           top-p (default 0.95, 1 = off)\n"
        "      --min-p P           min-p (default 0.05, 0 = off)\n"
        "      --repeat-penalty F  repetition penalty (default 1.0 = off)\n"
        "      --repeat-last-n N   tokens the penalty looks back over (default 64)\n"
        "  -s, --seed N            random seed (default -1 = random)\n"
        "      --ignore-eos        keep generating past the end-of-text token\n"
        "      --special           show control tokens (<|end_of_text|>, ...) as text; by default\n"
        "                          they are left out of the output\n"
        "      --no-display-prompt do not echo the prompt\n"
        "  -cnv, --conversation    chat: each line read from stdin is a user turn, answered until the\n"
        "                          model ends its turn; /exit, end of input (Ctrl-D) or Ctrl-C at the\n"
        "                          prompt quit; Ctrl-C during an answer stops it. When the conversation\n"
        "                          outgrows the context (-c), the oldest turns are dropped (the system\n"
        "                          prompt is kept) and the rest is evaluated again\n"
        "      --chat-template NAME chat format: %s (default: recognized from the\n"
        "                          model's tokenizer.chat_template)\n"
        "%s%s"
        "speculative decoding (completion; the output is the same as without it):\n"
        "      --spec MODE         off (default), ngram (guesses from the prompt and the text so\n"
        "                          far) or draft (a draft model, -md)\n"
        "  -md, --model-draft FILE draft model: a smaller GGUF with the same vocabulary (implies\n"
        "                          --spec draft)\n"
        "      --draft-max N       most guesses verified per forward pass (default 16)\n"
        "      --draft-min N       fewer guesses than this are not verified (default 0)\n"
        "      --draft-p-min P     draft model: stop guessing below this probability (default 0.75)\n"
        "      --spec-ngram-min N  shortest n-gram looked up (default 2)\n"
        "      --spec-ngram-max N  longest n-gram looked up (default 4)\n",
        bitnet_chat_template_names(), tool::kCacheUsage, tool::kMmapUsage);
}

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string f = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) die("missing value for " + f);
            return argv[++i];
        };
        if (f == "-h" || f == "--help") { usage(stdout); std::exit(0); }
        else if (f == "-m" || f == "--model") a.model = next();
        else if (f == "-p" || f == "--prompt") a.prompt = next();
        else if (f == "-n" || f == "--n-predict") a.n_predict = (int)parse_int(f, next());
        else if (f == "-t" || f == "--threads") a.n_threads = (int)parse_int(f, next());
        else if (f == "-c" || f == "--ctx-size") a.n_ctx = (int)parse_int(f, next());
        else if (f == "-b" || f == "--batch-size") a.n_batch = (int)parse_int(f, next());
        else if (f == "--temp" || f == "--temperature") a.temp = parse_float(f, next());
        else if (f == "--top-k") a.top_k = (int)parse_int(f, next());
        else if (f == "--top-p") a.top_p = parse_float(f, next());
        else if (f == "--min-p") a.min_p = parse_float(f, next());
        else if (f == "--repeat-penalty") a.repeat_penalty = parse_float(f, next());
        else if (f == "--repeat-last-n") a.repeat_last_n = (int)parse_int(f, next());
        else if (f == "-s" || f == "--seed") a.seed = parse_int(f, next());
        else if (f == "--ignore-eos") a.ignore_eos = true;
        else if (f == "--special") a.special = true;
        else if (f == "--no-display-prompt") a.display_prompt = false;
        else if (f == "-cnv" || f == "--conversation") a.conversation = true;
        else if (f == "--chat-template") a.chat_template = next();
        else if (tool::parse_cache_flag(f, next, a.cache)) {}
        else if (tool::parse_mmap_flag(f, a.use_mmap)) {}
        else if (f == "--spec") a.spec = next();
        else if (f == "-md" || f == "--model-draft") a.model_draft = next();
        else if (f == "--draft-max" || f == "--draft") a.draft_max = (int)parse_int(f, next());
        else if (f == "--draft-min") a.draft_min = (int)parse_int(f, next());
        else if (f == "--draft-p-min") a.draft_p_min = parse_float(f, next());
        else if (f == "--spec-ngram-min") a.ngram_min = (int)parse_int(f, next());
        else if (f == "--spec-ngram-max") a.ngram_max = (int)parse_int(f, next());
        else die("unknown argument '" + f + "' (see bitnet-cli --help)");
    }
    if (a.model.empty()) die("no model given: use -m MODEL.gguf (see bitnet-cli --help)");
    tool::check_threads(a.n_threads);
    if (a.n_ctx < 0) die("-c must be >= 0");
    if (a.n_batch <= 0) die("-b must be > 0");
    if (a.n_predict < -1) die("-n must be >= -1");
    if (!a.chat_template.empty() && !a.conversation)
        die("--chat-template only applies to chat mode: add -cnv");
    if (!a.model_draft.empty() && a.spec == "off") a.spec = "draft";
    if (a.spec != "off" && a.spec != "ngram" && a.spec != "draft")
        die("--spec must be off, ngram or draft (got '" + a.spec + "')");
    if (a.spec == "draft" && a.model_draft.empty())
        die("--spec draft needs a draft model: give -md FILE");
    if (a.spec != "draft" && !a.model_draft.empty())
        die("-md is a draft model for --spec draft, not --spec " + a.spec);
    if (a.spec != "off" && a.conversation)
        die("--spec applies to completion, not yet to chat mode (-cnv)");
    return a;
}

std::string piece(const bitnet_model* m, bitnet_token t) {
    std::string s(32, '\0');
    int32_t n = bitnet_token_to_piece(m, t, &s[0], (int32_t)s.size());
    if (n < 0 && n != INT32_MIN) {
        s.resize((size_t)-n);
        n = bitnet_token_to_piece(m, t, &s[0], (int32_t)s.size());
    }
    if (n < 0) die(bitnet_last_error());
    s.resize((size_t)n);
    return s;
}

// The text a generated token adds to the output: control tokens are markup, shown only with
// --special (as llama.cpp does).
std::string shown_piece(const bitnet_model* m, bitnet_token t, const Args& a) {
    if (!a.special && bitnet_token_is_control(m, t)) return {};
    return piece(m, t);
}

// What runs, on stderr, once the input has been checked (so that bad input stays one line). A
// greedy run (--temp 0) draws no random numbers: no seed to report.
void print_banner(const bitnet_model* model, const bitnet_context* ctx, const Args& a, uint64_t seed) {
    std::fprintf(stderr, "model: %s, %d threads, kernels %s, ", bitnet_model_desc(model),
                 bitnet_context_n_threads(ctx), bitnet_isa());
    if (a.temp <= 0) std::fprintf(stderr, "greedy\n");
    else std::fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
}

// Evaluates toks[0..n) after what the context holds, in passes of up to n_batch tokens. A prompt
// longer than kProgressEvery tokens takes seconds to minutes: each time another kProgressEvery
// tokens are done, a line on stderr says how far it got.
constexpr int kProgressEvery = 512;

void decode_prompt(bitnet_context* ctx, const bitnet_token* toks, int32_t n, int n_batch) {
    const double t0 = now_s();
    for (int32_t done = 0; done < n;) {
        const int32_t step = std::min<int32_t>(n_batch, n - done);
        if (bitnet_decode(ctx, toks + done, step, 0) != 0) die(bitnet_last_error());
        const bool crossed = (done + step) / kProgressEvery > done / kProgressEvery;
        done += step;
        if (n > kProgressEvery && (crossed || done == n))
            std::fprintf(stderr, "prompt eval: %d/%d tokens (%.1f s)\n", done, n, now_s() - t0);
    }
}

// Generation with speculative decoding: the first token from the prompt's logits, then steps
// that each verify a draft in one forward pass and yield one or more tokens. n_gen counts as the
// plain loop counts (tokens kept; a stopping end-of-generation token is not one).
void spec_generate(bitnet_model* model, bitnet_context* ctx, bitnet_sampler* sampler,
                   bitnet_spec* spec, const Args& a, std::vector<bitnet_token> hist, int limit,
                   int* n_gen) {
    if (limit <= 0) return;
    const int32_t n_vocab = bitnet_model_n_vocab(model);
    std::vector<bitnet_token> out;
    out.push_back(bitnet_sampler_sample(sampler, bitnet_get_logits(ctx, -1), n_vocab));
    bitnet_sampler_accept(sampler, out[0]);
    for (;;) {
        for (bitnet_token t : out) {
            if (!a.ignore_eos && bitnet_token_is_eog(model, t)) return;
            ++*n_gen;
            const std::string s = shown_piece(model, t, a);
            std::fwrite(s.data(), 1, s.size(), stdout);
            hist.push_back(t);
            if (*n_gen == limit) return;  // the last token needs no forward pass
        }
        std::fflush(stdout);
        out.resize((size_t)(limit - *n_gen));
        const int32_t n = bitnet_spec_step(spec, ctx, 0, sampler, hist.data(), (int32_t)hist.size(),
                                           out.data(), (int32_t)out.size());
        if (n < 0) die(bitnet_last_error());
        out.resize((size_t)n);
    }
}

// The speculation line of the timings: what was guessed, kept, and produced per forward pass.
void print_spec_stats(const bitnet_spec* spec) {
    const bitnet_spec_stats st = bitnet_spec_get_stats(spec);
    std::fprintf(stderr,
                 "speculation: %lld drafted, %lld accepted (%.1f%%), %lld forward passes, "
                 "%.2f tokens per pass\n",
                 (long long)st.drafted, (long long)st.accepted,
                 st.drafted > 0 ? 100.0 * st.accepted / st.drafted : 0.0, (long long)st.steps,
                 st.steps > 0 ? (double)st.generated / st.steps : 0.0);
}

// Completion: the prompt (with BOS) and its continuation.
void run_completion(bitnet_model* model, bitnet_context* ctx, bitnet_sampler* sampler,
                    bitnet_spec* spec, const Args& a, uint64_t seed) {
    std::vector<bitnet_token> prompt(a.prompt.size() + 8);
    int32_t np = bitnet_tokenize(model, a.prompt.data(), (int32_t)a.prompt.size(), prompt.data(),
                                 (int32_t)prompt.size(), 1, 1);
    if (np < 0) die(bitnet_last_error());
    prompt.resize((size_t)np);
    if (np == 0) die("the prompt is empty and the model adds no BOS token: give a prompt with -p");
    const int32_t n_ctx = bitnet_context_n_ctx(ctx);
    if (np >= n_ctx)
        die("the prompt has " + std::to_string(np) + " tokens but the context holds " +
            std::to_string(n_ctx) + ": use a larger -c or a shorter prompt");
    for (bitnet_token t : prompt) bitnet_sampler_accept(sampler, t);

    print_banner(model, ctx, a, seed);
    if (a.display_prompt) {
        std::fwrite(a.prompt.data(), 1, a.prompt.size(), stdout);
        std::fflush(stdout);
    }

    const double t0 = now_s();
    decode_prompt(ctx, prompt.data(), np, a.n_batch);
    const double t1 = now_s();

    // n_gen counts the generated tokens, as the server's completion_tokens does: each one sampled
    // and kept, whether or not it shows as text; an end-of-generation token that stops the run is
    // not one of them. Their time runs from the end of the prompt to the last of them (sampling
    // included; the last token needs no forward pass).
    const int32_t n_vocab = bitnet_model_n_vocab(model);
    int n_gen = 0;
    const int limit = a.n_predict < 0 ? n_ctx - np : std::min(a.n_predict, n_ctx - np);
    if (spec) spec_generate(model, ctx, sampler, spec, a, prompt, limit, &n_gen);
    while (!spec && n_gen < limit) {
        const float* logits = bitnet_get_logits(ctx, -1);
        bitnet_token t = bitnet_sampler_sample(sampler, logits, n_vocab);
        bitnet_sampler_accept(sampler, t);
        if (!a.ignore_eos && bitnet_token_is_eog(model, t)) break;
        ++n_gen;
        const std::string s = shown_piece(model, t, a);
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
        if (n_gen == limit) break;
        if (bitnet_decode(ctx, &t, 1, 0) != 0) die(bitnet_last_error());
    }
    const double t_gen = now_s() - t1;
    std::fputc('\n', stdout);
    std::fflush(stdout);

    const double tp = t1 - t0;
    std::fprintf(stderr, "prompt eval: %d tokens in %.3f s (%.2f tokens/s)\n", np, tp,
                 tp > 0 ? np / tp : 0.0);
    std::fprintf(stderr, "generation:  %d token%s in %.3f s (%.2f tokens/s)\n", n_gen, n_gen == 1 ? "" : "s",
                 t_gen, t_gen > 0 ? n_gen / t_gen : 0.0);
    if (spec) print_spec_stats(spec);
}

// ---- chat ------------------------------------------------------------------------------------

volatile sig_atomic_t g_interrupted = 0;

void on_sigint(int) { g_interrupted = 1; }

// SIGINT sets a flag instead of killing the process. No SA_RESTART: a read(2) waiting at the
// prompt returns EINTR at once, so Ctrl-C there is seen without another key.
void catch_sigint() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, nullptr);
}

enum class Input { LINE, END, INTERRUPTED };

// Lines from stdin through read(2) rather than stdio, whose buffering would hide an EINTR.
class LineReader {
public:
    Input next(std::string* line) {
        for (;;) {
            const size_t nl = buf_.find('\n');
            if (nl != std::string::npos) {
                *line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                if (!line->empty() && line->back() == '\r') line->pop_back();
                return Input::LINE;
            }
            if (eof_) {
                if (buf_.empty()) return Input::END;
                line->swap(buf_);  // a last line without its newline
                buf_.clear();
                return Input::LINE;
            }
            char chunk[4096];
            const ssize_t n = read(0, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) {
                if (g_interrupted) return Input::INTERRUPTED;
                continue;
            }
            if (n <= 0) eof_ = true;  // end of input, or an unreadable stdin: both end the chat
            else buf_.append(chunk, (size_t)n);
        }
    }

private:
    std::string buf_;
    bool eof_ = false;
};

struct Message {
    std::string role, content;
};

class ChatSession {
public:
    ChatSession(bitnet_model* model, bitnet_context* ctx, bitnet_sampler* sampler, const Args& a)
        : model_(model), ctx_(ctx), sampler_(sampler), a_(a),
          tmpl_(a.chat_template.empty() ? nullptr : a.chat_template.c_str()),
          n_ctx_(bitnet_context_n_ctx(ctx)) {
        // Fail on an unknown or missing template now, not after the first question.
        if (bitnet_chat_apply(model_, tmpl_, nullptr, 0, true, nullptr, 0) < 0) die(bitnet_last_error());
        if (!a.prompt.empty()) msgs_.push_back({"system", a.prompt});
        // Leave room for an answer: -n tokens, at most half the context.
        room_ = std::min(a.n_predict > 0 ? a.n_predict : n_ctx_ / 4, n_ctx_ / 2);
    }

    const char* template_name() const {
        if (tmpl_) return tmpl_;
        const char* name = bitnet_chat_template_name(model_);
        return name ? name : "?";
    }

    // One user turn: evaluates the conversation up to the assistant prompt and streams the answer.
    void turn(const std::string& user) {
        msgs_.push_back({"user", user});
        std::vector<bitnet_token> toks = fitting_prompt();
        if (toks.empty()) return;
        feed(toks);
        msgs_.push_back({"assistant", answer()});
    }

    void report() const {
        std::fprintf(stderr, "prompt eval: %lld tokens in %.3f s (%.2f tokens/s)\n", n_fed_, t_fed_,
                     t_fed_ > 0 ? n_fed_ / t_fed_ : 0.0);
        std::fprintf(stderr, "generation:  %lld token%s in %.3f s (%.2f tokens/s)\n", n_gen_,
                     n_gen_ == 1 ? "" : "s", t_gen_, t_gen_ > 0 ? n_gen_ / t_gen_ : 0.0);
    }

private:
    std::vector<bitnet_token> render_tokens() const {
        std::vector<bitnet_chat_message> cm;
        for (const Message& m : msgs_) cm.push_back({m.role.c_str(), m.content.c_str()});
        std::string text(256, '\0');
        for (int pass = 0; pass < 2; ++pass) {
            const int32_t n = bitnet_chat_apply(model_, tmpl_, cm.data(), cm.size(), true, &text[0],
                                                (int32_t)text.size());
            if (n < 0) die(bitnet_last_error());
            const bool fits = (size_t)n < text.size();
            text.resize((size_t)n + (fits ? 0 : 1));
            if (fits) break;
        }
        std::vector<bitnet_token> toks(text.size() + 8);
        for (int pass = 0; pass < 2; ++pass) {
            const int32_t n = bitnet_tokenize(model_, text.data(), (int32_t)text.size(), toks.data(),
                                              (int32_t)toks.size(), 0, 1);
            if (n == INT32_MIN) die(bitnet_last_error());
            if (n >= 0) {
                toks.resize((size_t)n);
                break;
            }
            toks.resize((size_t)-n);
        }
        return toks;
    }

    // The tokens of the conversation, after dropping its oldest turns (never the system prompt)
    // until they leave room for an answer. Empty, with the new message withdrawn, when the new
    // message alone does not fit.
    std::vector<bitnet_token> fitting_prompt() {
        const size_t first = (!msgs_.empty() && msgs_[0].role == "system") ? 1 : 0;
        int dropped = 0;
        for (;;) {
            std::vector<bitnet_token> toks = render_tokens();
            const bool older_turns = msgs_.size() - 1 > first;
            if ((int64_t)toks.size() + room_ <= n_ctx_ || (!older_turns && (int64_t)toks.size() < n_ctx_)) {
                if (dropped > 0)
                    std::fprintf(stderr, "[context full: dropped the %d oldest message%s]\n", dropped,
                                 dropped == 1 ? "" : "s");
                return toks;
            }
            if (!older_turns) {
                std::fprintf(stderr,
                             "[this message needs %zu tokens with the system prompt, more than the "
                             "context of %d: use a larger -c or a shorter message]\n",
                             toks.size(), n_ctx_);
                msgs_.pop_back();
                return {};
            }
            // Drop a whole exchange: the oldest user message and the answer that follows it.
            const size_t n = msgs_[first + 1].role == "assistant" && first + 2 < msgs_.size() ? 2 : 1;
            msgs_.erase(msgs_.begin() + first, msgs_.begin() + first + n);
            dropped += (int)n;
        }
    }

    // Brings the KV cache to `toks`: keeps the longest common prefix, evaluates the rest.
    void feed(const std::vector<bitnet_token>& toks) {
        size_t keep = 0;
        while (keep < cached_.size() && keep < toks.size() && cached_[keep] == toks[keep]) ++keep;
        if (keep == toks.size()) --keep;  // the last token is run again for its logits
        bitnet_context_truncate(ctx_, (int32_t)keep);
        cached_.resize(keep);
        const double t0 = now_s();
        decode_prompt(ctx_, toks.data() + keep, (int32_t)(toks.size() - keep), a_.n_batch);
        t_fed_ += now_s() - t0;
        n_fed_ += (long long)(toks.size() - keep);
        for (size_t i = keep; i < toks.size(); ++i) {
            cached_.push_back(toks[i]);
            bitnet_sampler_accept(sampler_, toks[i]);
        }
    }

    // Streams the answer to stdout until the end-of-turn token, -n tokens, a full context or
    // Ctrl-C; returns its text. Tokens and time are counted as in run_completion.
    std::string answer() {
        const int32_t n_vocab = bitnet_model_n_vocab(model_);
        const double t0 = now_s();
        std::string text;
        for (int n = 0; a_.n_predict < 0 || n < a_.n_predict; ++n) {
            if (g_interrupted) break;
            const bitnet_token t = bitnet_sampler_sample(sampler_, bitnet_get_logits(ctx_, -1), n_vocab);
            bitnet_sampler_accept(sampler_, t);
            if (!a_.ignore_eos && bitnet_token_is_eog(model_, t)) break;
            const std::string s = shown_piece(model_, t, a_);
            std::fwrite(s.data(), 1, s.size(), stdout);
            std::fflush(stdout);
            text += piece(model_, t);
            ++n_gen_;
            if (a_.n_predict >= 0 && n + 1 == a_.n_predict) break;  // the last token needs no pass
            if ((int32_t)cached_.size() >= n_ctx_) {
                std::fprintf(stderr, "\n[context full: answer cut; the oldest turns will be dropped]");
                break;
            }
            if (bitnet_decode(ctx_, &t, 1, 0) != 0) die(bitnet_last_error());
            cached_.push_back(t);
        }
        t_gen_ += now_s() - t0;
        g_interrupted = 0;  // an interrupted answer ends here; the chat goes on
        std::fputc('\n', stdout);
        std::fflush(stdout);
        return text;
    }

    bitnet_model* model_;
    bitnet_context* ctx_;
    bitnet_sampler* sampler_;
    const Args& a_;
    const char* tmpl_;  // --chat-template, or nullptr for the model's
    int32_t n_ctx_;
    int32_t room_;
    std::vector<Message> msgs_;
    std::vector<bitnet_token> cached_;  // the tokens in the KV cache, in order
    long long n_fed_ = 0, n_gen_ = 0;
    double t_fed_ = 0.0, t_gen_ = 0.0;
};

void run_chat(bitnet_model* model, bitnet_context* ctx, bitnet_sampler* sampler, const Args& a,
              uint64_t seed) {
    ChatSession chat(model, ctx, sampler, a);
    catch_sigint();
    print_banner(model, ctx, a, seed);
    std::fprintf(stderr,
                 "chat (template %s): type a message and press Enter; /exit, Ctrl-D or Ctrl-C at "
                 "the prompt quits, Ctrl-C during an answer stops it\n",
                 chat.template_name());
    LineReader input;
    std::string line;
    for (;;) {
        std::fputs("> ", stdout);
        std::fflush(stdout);
        const Input got = input.next(&line);
        if (got != Input::LINE || line == "/exit") break;
        if (line.empty()) continue;
        chat.turn(line);
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);
    chat.report();
}

}  // namespace

int main(int argc, char** argv) {
    Args a = parse_args(argc, argv);

    bitnet_model* model = tool::load_model(a.model, a.use_mmap);

    bitnet_context_params cp = bitnet_context_default_params();
    cp.n_ctx = a.n_ctx;
    cp.n_threads = a.n_threads;
    cp.n_batch = a.n_batch;
    a.cache.apply(cp);
    // Certified output (bitnet.h) makes exact only the rows that can be among the top
    // certified_top_k: greedy needs the top one, top-k sampling the top k. Without top-k, or with a
    // repetition penalty (applied after certification, it lowers rows and can lift uncertified
    // ones into the top k), every logit is made exact.
    if (a.repeat_penalty != 1.0f || (a.temp > 0 && a.top_k <= 0)) cp.exact_output = 1;
    else if (a.temp > 0) cp.certified_top_k = a.top_k;
    bitnet_context* ctx = bitnet_context_new(model, cp);
    if (!ctx) die(bitnet_last_error());
    tool::note_context(model, a.n_ctx, bitnet_context_n_ctx(ctx));

    bitnet_sampler_params sp = bitnet_sampler_default_params();
    sp.temperature = a.temp;
    sp.top_k = a.top_k;
    sp.top_p = a.top_p;
    sp.min_p = a.min_p;
    sp.repeat_penalty = a.repeat_penalty;
    sp.repeat_last_n = a.repeat_last_n;
    sp.seed = a.seed < 0 ? std::random_device{}() : (uint64_t)a.seed;
    bitnet_sampler* sampler = bitnet_sampler_new(&sp);
    if (!sampler) die(bitnet_last_error());

    bitnet_model* draft = nullptr;
    bitnet_spec* spec = nullptr;
    if (a.spec != "off") {
        bitnet_spec_params pp = bitnet_spec_default_params();
        pp.mode = a.spec == "ngram" ? BITNET_SPEC_NGRAM : BITNET_SPEC_DRAFT;
        pp.draft_max = a.draft_max;
        pp.draft_min = a.draft_min;
        pp.draft_p_min = a.draft_p_min;
        pp.ngram_min = a.ngram_min;
        pp.ngram_max = a.ngram_max;
        pp.seed = sp.seed;
        if (!a.model_draft.empty()) {
            bitnet_model_params mp = bitnet_model_default_params();
            mp.use_mmap = a.use_mmap ? 1 : 0;
            draft = bitnet_model_load_with_params(a.model_draft.c_str(), mp);
            if (!draft) die("draft model: " + std::string(bitnet_last_error()));
            pp.draft_model = draft;
        }
        spec = bitnet_spec_new(model, ctx, &pp, sampler);
        if (!spec) die(bitnet_last_error());
    }

    if (a.conversation) run_chat(model, ctx, sampler, a, sp.seed);
    else run_completion(model, ctx, sampler, spec, a, sp.seed);

    bitnet_spec_free(spec);
    bitnet_model_free(draft);

    bitnet_sampler_free(sampler);
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return 0;
}
