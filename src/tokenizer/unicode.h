// Unicode helpers for the tokenizer: UTF-8 decoding that survives invalid bytes, the code point
// classes of the pre-tokenizer regexes (\p{L}, \p{N}, \s, from a generated table), and GPT-2's
// byte-level alphabet (each byte 0..255 shown as one printable code point).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bitnet::unicode {

// Class bits of a code point; a code point can have none (punctuation, symbols, marks, ...).
enum : uint8_t {
    CP_LETTER = 1,  // general category L*  (\p{L})
    CP_NUMBER = 2,  // general category N*  (\p{N})
    CP_SPACE = 4,   // Unicode White_Space (Oniguruma's \s)
};

// Stand-in code point for a byte that is not part of a well-formed UTF-8 sequence.
constexpr uint32_t CP_INVALID = 0xFFFD;

// Class bits of cp (0 for unassigned code points and anything above U+10FFFF).
uint8_t cp_flags(uint32_t cp);

// Unicode version of the class table, e.g. "16.0.0".
const char* table_version();

// Decodes text[begin, end) into code points. Appends one entry per code point to cps and its byte
// offset to offs, then a final offs entry == end, so unit i spans bytes [offs[i], offs[i+1]).
// Ill-formed UTF-8 (bad lead or continuation byte, truncation, overlong form, surrogate, value
// above U+10FFFF) yields one CP_INVALID unit per offending byte, so every input byte belongs to
// exactly one unit and the byte-level BPE still sees the raw bytes.
void utf8_decode(const std::string& text, size_t begin, size_t end, std::vector<uint32_t>& cps,
                 std::vector<uint32_t>& offs);

// UTF-8 encoding of a valid code point (< 0x110000).
void utf8_append(std::string& out, uint32_t cp);

// GPT-2 byte-level alphabet: byte b is written as code point byte_to_cp(b) in vocabulary strings.
uint32_t byte_to_cp(uint8_t b);
// Inverse of byte_to_cp: the byte for cp, or -1 when cp is not in the alphabet.
int cp_to_byte(uint32_t cp);

}  // namespace bitnet::unicode
