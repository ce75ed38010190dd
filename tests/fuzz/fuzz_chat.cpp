// libFuzzer harness: chat rendering (src/chat) on arbitrary text. The input, split at NUL bytes,
// is a Jinja template text to recognize (or a family name), the BOS and EOS texts, then role and
// content pairs; every family renders the conversation with and without the assistant prompt.
// Rendering must never crash or read out of bounds, whatever the bytes (invalid UTF-8, Python
// whitespace cut in the middle of a character, empty roles).
#include <cstdint>
#include <string>
#include <vector>

#include "chat/chat.h"
#include "fuzz_common.h"
#include "util/common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<std::string> parts(1);
    for (size_t i = 0; i < size; ++i) {
        if (data[i] == 0) parts.emplace_back();
        else parts.back() += (char)data[i];
    }
    parts.resize(std::max<size_t>(parts.size(), 3));
    const std::string& choice = parts[0];
    std::vector<bitnet::ChatMessage> msgs;
    for (size_t i = 3; i + 1 < parts.size(); i += 2) msgs.push_back({parts[i], parts[i + 1]});

    try {
        bitnet::chat_family_resolve(choice.c_str(), nullptr);
    } catch (const bitnet::Error&) {
        // Unknown names and unrecognized templates are refused with a message: expected.
    }
    bitnet::ChatFamily detected;
    bitnet::chat_family_detect(choice, &detected);
    for (bitnet::ChatFamily f : {bitnet::ChatFamily::BITNET, bitnet::ChatFamily::LLAMA3,
                                 bitnet::ChatFamily::FALCON3, bitnet::ChatFamily::CHATML}) {
        for (bool add_assistant : {false, true}) {
            const std::string text = bitnet::chat_render(f, msgs, add_assistant, parts[1], parts[2]);
            if (!msgs.empty() && (f == bitnet::ChatFamily::BITNET || f == bitnet::ChatFamily::LLAMA3) &&
                text.compare(0, parts[1].size(), parts[1]) != 0)
                fuzz::fail("a template that writes BOS first did not");
            // ChatML copies roles and contents verbatim (no trim): each must be in the text.
            if (f == bitnet::ChatFamily::CHATML)
                for (const bitnet::ChatMessage& m : msgs)
                    if (text.find(m.content) == std::string::npos)
                        fuzz::fail("a ChatML message content is missing from the rendered text");
        }
    }
    return 0;
}
