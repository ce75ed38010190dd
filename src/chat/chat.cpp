// Chat template recognition and rendering (see chat.h). Each render function mirrors one family's
// Jinja template statement by statement; the comments name the Jinja filters they reproduce.
#include "chat/chat.h"

#include <cstdint>
#include <cstring>

#include "util/common.h"

namespace bitnet {

namespace {

struct FamilyName {
    ChatFamily family;
    const char* name;
};

constexpr FamilyName kFamilies[] = {
    {ChatFamily::BITNET, "bitnet"},
    {ChatFamily::LLAMA3, "llama3"},
    {ChatFamily::FALCON3, "falcon3"},
    {ChatFamily::CHATML, "chatml"},
};

bool contains(const std::string& text, const char* needle) {
    return text.find(needle) != std::string::npos;
}

// Length of the UTF-8 sequence at s[i] if it is a character Python's str.isspace() accepts, else 0.
// Jinja's `trim` is Python's str.strip(), which strips exactly these, not only ASCII blanks.
size_t space_len(const std::string& s, size_t i) {
    const unsigned char c = (unsigned char)s[i];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
    const size_t n = s.size() - i;
    auto at = [&](size_t k) { return (unsigned char)s[i + k]; };
    if (c == 0xC2 && n >= 2 && (at(1) == 0x85 || at(1) == 0xA0)) return 2;  // U+0085, U+00A0
    if (n < 3) return 0;
    if (c == 0xE1 && at(1) == 0x9A && at(2) == 0x80) return 3;  // U+1680
    if (c == 0xE2 && at(1) == 0x80) {
        const unsigned char d = at(2);
        // U+2000..U+200A, U+2028, U+2029, U+202F
        if ((d >= 0x80 && d <= 0x8A) || d == 0xA8 || d == 0xA9 || d == 0xAF) return 3;
    }
    if (c == 0xE2 && at(1) == 0x81 && at(2) == 0x9F) return 3;  // U+205F
    if (c == 0xE3 && at(1) == 0x80 && at(2) == 0x80) return 3;  // U+3000
    return 0;
}

// Start of the trailing run of Python whitespace (UTF-8 continuation bytes are never spaces, so
// walking back to each character's lead byte is enough).
size_t trailing_space_start(const std::string& s, size_t begin) {
    size_t end = s.size();
    while (end > begin) {
        size_t lead = end - 1;
        while (lead > begin && ((unsigned char)s[lead] & 0xC0) == 0x80) --lead;
        if (space_len(s, lead) != end - lead) break;
        end = lead;
    }
    return end;
}

// Jinja `| trim`.
std::string trim(const std::string& s) {
    size_t begin = 0;
    while (begin < s.size()) {
        const size_t n = space_len(s, begin);
        if (n == 0) break;
        begin += n;
    }
    return s.substr(begin, trailing_space_start(s, begin) - begin);
}

// Jinja `| capitalize` (Python str.capitalize) for the ASCII role names templates see.
std::string capitalize(const std::string& s) {
    std::string out = s;
    for (size_t i = 0; i < out.size(); ++i) {
        const unsigned char c = (unsigned char)out[i];
        if (i == 0 && c >= 'a' && c <= 'z') out[i] = (char)(c - 'a' + 'A');
        if (i > 0 && c >= 'A' && c <= 'Z') out[i] = (char)(c - 'A' + 'a');
    }
    return out;
}

// microsoft/bitnet-b1.58-2B-4T:
//   {% for message in messages %}{% set content = message['role'] | capitalize + ': '
//   + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content =
//   bos_token + content %}{% endif %}{{ content }}{% endfor %}
//   {% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}
std::string render_bitnet(const std::vector<ChatMessage>& msgs, bool add_assistant,
                          const std::string& bos) {
    std::string out;
    for (size_t i = 0; i < msgs.size(); ++i) {
        if (i == 0) out += bos;
        out += capitalize(msgs[i].role) + ": " + trim(msgs[i].content) + "<|eot_id|>";
    }
    if (add_assistant) out += "Assistant: ";
    return out;
}

// Meta-Llama-3-*-Instruct: the same loop with
//   '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + content | trim + '<|eot_id|>'
// and the generation prompt '<|start_header_id|>assistant<|end_header_id|>\n\n'.
std::string render_llama3(const std::vector<ChatMessage>& msgs, bool add_assistant,
                          const std::string& bos) {
    std::string out;
    for (size_t i = 0; i < msgs.size(); ++i) {
        if (i == 0) out += bos;
        out += "<|start_header_id|>" + msgs[i].role + "<|end_header_id|>\n\n" +
               trim(msgs[i].content) + "<|eot_id|>";
    }
    if (add_assistant) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

// tiiuae/Falcon3-*-Instruct (the branch without tools): system and user turns are
// '<|role|>\n' + content + '\n'; an assistant turn is '<|assistant|>\n' + content + eos_token,
// followed by '\n' unless it is the last message; other roles are skipped. The generation prompt
// '<|assistant|>\n' is emitted inside the loop on its last iteration, so an empty conversation
// renders nothing.
std::string render_falcon3(const std::vector<ChatMessage>& msgs, bool add_assistant,
                           const std::string& eos) {
    std::string out;
    for (size_t i = 0; i < msgs.size(); ++i) {
        const ChatMessage& m = msgs[i];
        const bool last = i + 1 == msgs.size();
        if (m.role == "system" || m.role == "user") {
            out += "<|" + m.role + "|>\n" + m.content + "\n";
        } else if (m.role == "assistant") {
            out += "<|assistant|>\n" + m.content + eos + (last ? "" : "\n");
        }
        if (last && add_assistant) out += "<|assistant|>\n";
    }
    return out;
}

// ChatML: '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n' per message, generation
// prompt '<|im_start|>assistant\n'.
std::string render_chatml(const std::vector<ChatMessage>& msgs, bool add_assistant) {
    std::string out;
    for (const ChatMessage& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (add_assistant) out += "<|im_start|>assistant\n";
    return out;
}

// The first line of a template, shortened, to name it in an error message.
std::string template_excerpt(const char* jinja) {
    std::string s(jinja);
    s = s.substr(0, s.find('\n'));
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}

}  // namespace

const char* chat_family_name(ChatFamily family) {
    for (const FamilyName& f : kFamilies)
        if (f.family == family) return f.name;
    BITNET_ASSERT(false);
    return nullptr;
}

const char* chat_family_names() { return "bitnet, llama3, falcon3, chatml"; }

bool chat_family_from_name(const std::string& name, ChatFamily* family) {
    for (const FamilyName& f : kFamilies) {
        if (name == f.name) {
            *family = f.family;
            return true;
        }
    }
    return false;
}

bool chat_family_detect(const std::string& t, ChatFamily* family) {
    // 2B4T: "Assistant: " with Llama-3's <|eot_id|> but none of Llama-3's headers. bitnet.cpp's
    // official GGUF carries a placeholder its converter wrote ("Human: ... BITNETAssistant: ")
    // that is not the format the model was trained on: it means this model, so its real format.
    if (contains(t, "BITNETAssistant") ||
        (contains(t, "'Assistant: '") && contains(t, "<|eot_id|>") &&
         !contains(t, "<|start_header_id|>"))) {
        *family = ChatFamily::BITNET;
    } else if (contains(t, "<|start_header_id|>") && contains(t, "<|end_header_id|>")) {
        *family = ChatFamily::LLAMA3;
    } else if (contains(t, "<|system|>") && contains(t, "<|user|>") && contains(t, "<|assistant|>") &&
               !contains(t, "<|end|>")) {  // <|end|> closes turns in Phi-3's look-alike format
        *family = ChatFamily::FALCON3;
    } else if (contains(t, "<|im_start|>")) {
        *family = ChatFamily::CHATML;
    } else {
        return false;
    }
    return true;
}

ChatFamily chat_family_resolve(const char* choice, const char* model_template) {
    ChatFamily family;
    if (choice) {
        if (chat_family_from_name(choice, &family) || chat_family_detect(choice, &family))
            return family;
        fail("unknown chat template '%s': use --chat-template with one of: %s",
             template_excerpt(choice).c_str(), chat_family_names());
    }
    if (!model_template || !*model_template)
        fail("the model has no chat template (no tokenizer.chat_template in the GGUF): choose one "
             "with --chat-template NAME (one of: %s)", chat_family_names());
    if (chat_family_detect(model_template, &family)) return family;
    fail("the model's chat template is not one bitnet knows (it begins '%s'): choose one with "
         "--chat-template NAME (one of: %s)", template_excerpt(model_template).c_str(),
         chat_family_names());
}

std::string chat_render(ChatFamily family, const std::vector<ChatMessage>& messages,
                        bool add_assistant, const std::string& bos, const std::string& eos) {
    switch (family) {
        case ChatFamily::BITNET: return render_bitnet(messages, add_assistant, bos);
        case ChatFamily::LLAMA3: return render_llama3(messages, add_assistant, bos);
        case ChatFamily::FALCON3: return render_falcon3(messages, add_assistant, eos);
        case ChatFamily::CHATML: return render_chatml(messages, add_assistant);
    }
    BITNET_ASSERT(false);
    return {};
}

}  // namespace bitnet
