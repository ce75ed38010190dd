// Chat templates of the model families bitnet runs, without a Jinja interpreter.
//
// A GGUF carries the Hugging Face Jinja template as `tokenizer.chat_template`. Like llama.cpp, we
// recognize the family from distinctive substrings of that text and render the conversation with a
// small hand-written function per family, each written to produce byte for byte what transformers'
// apply_chat_template produces with the family's real template (tests/test_chat.py checks that):
//
//   bitnet   microsoft/bitnet-b1.58-2B-4T: BOS, then "Role: content<|eot_id|>" per message,
//            generation prompt "Assistant: "
//   llama3   Llama-3 (HF1BitLLM/Llama3-8B-1.58-100B-tokens): BOS, then
//            "<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>" per message
//   falcon3  tiiuae/Falcon3-*-Instruct(-1.58bit): "<|role|>\ncontent\n", assistant turns closed
//            by EOS
//   chatml   "<|im_start|>role\ncontent<|im_end|>\n" (the common ChatML format)
//
// A user may override detection with a family name (bitnet-cli --chat-template NAME).
#pragma once

#include <string>
#include <vector>

namespace bitnet {

enum class ChatFamily { BITNET, LLAMA3, FALCON3, CHATML };

struct ChatMessage {
    std::string role;     // "system", "user", "assistant" (others are rendered as the template does)
    std::string content;
};

// The family's name as used by --chat-template ("bitnet", "llama3", ...). Static storage.
const char* chat_family_name(ChatFamily family);

// All names, comma-separated, for messages and --help: "bitnet, llama3, falcon3, chatml".
const char* chat_family_names();

// The family named `name` (exact, lower case); false when no family has that name.
bool chat_family_from_name(const std::string& name, ChatFamily* family);

// The family of a Jinja chat template, recognized from substrings that only that family's
// templates contain; false when the text matches no family.
bool chat_family_detect(const std::string& jinja, ChatFamily* family);

// The family to use: `choice` when given (a family name, or else a Jinja text to recognize),
// otherwise the model's template `model_template` (nullptr when the model has none). Throws
// bitnet::Error naming --chat-template and the known names when neither gives a family.
ChatFamily chat_family_resolve(const char* choice, const char* model_template);

// The conversation as text, exactly as the family's Jinja template renders it with these bos/eos
// token texts; with add_assistant the prompt that opens the assistant's reply is appended. The
// text contains special tokens as text: tokenize it with special-token parsing and without
// adding BOS (the templates that want BOS write it themselves), as transformers does.
std::string chat_render(ChatFamily family, const std::vector<ChatMessage>& messages,
                        bool add_assistant, const std::string& bos, const std::string& eos);

}  // namespace bitnet
