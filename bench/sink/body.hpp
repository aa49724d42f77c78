// The benchmark body: a deterministic message of any size, and a streaming
// 64-bit hash. The sink writes bodies with `lmtp-sink --make-body SIZE FILE`,
// every client sends that file, and the sink checks what it receives against
// the body it would have generated for the size the message declares.
//
// The message is
//   X-Bench-Size: 0000002048\r\n      (the whole message's size, 10 digits)
//   Subject: liblmtp benchmark\r\n
//   \r\n
//   lines of up to 78 octets with CRLF, every seventh starting with a dot
// and always ends with CRLF, so every client (whatever it does with line
// ends) sends it unchanged, and dot-stuffing is exercised on every message.
// This file is part of the test instrument: it shares nothing with core/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace sink {

constexpr std::size_t kMinBodySize = 64;
constexpr const char* kSizeHeader = "X-Bench-Size: ";

// Not cryptographic: enough to tell a corrupted, truncated or reordered body.
class Hash64 {
public:
    void update(const char* p, std::size_t n) {
        len_ += n;
        if (nt_) {
            while (nt_ < 8 && n) { tail_[nt_++] = static_cast<unsigned char>(*p++); --n; }
            if (nt_ < 8) return;
            word(tail_);
            nt_ = 0;
        }
        for (; n >= 8; p += 8, n -= 8) word(p);
        while (n) { tail_[nt_++] = static_cast<unsigned char>(*p++); --n; }
    }
    std::uint64_t final() const {
        std::uint64_t w = 0;
        std::memcpy(&w, tail_, nt_);
        std::uint64_t h = mix(mix(h_, w), len_);
        h ^= h >> 31;
        return h;
    }
    std::uint64_t length() const { return len_; }

private:
    static std::uint64_t mix(std::uint64_t h, std::uint64_t w) {
        h ^= w * 0x9E3779B97F4A7C15ULL;
        h = (h << 29) | (h >> 35);
        return h * 0xBF58476D1CE4E5B9ULL;
    }
    void word(const void* p) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h_ = mix(h_, w);
    }
    std::uint64_t h_ = 0x243F6A8885A308D3ULL;
    std::uint64_t len_ = 0;
    unsigned char tail_[8] = {};
    std::size_t nt_ = 0;
};

// The whole body of `size` octets (size >= kMinBodySize).
inline std::string make_body(std::size_t size) {
    static const char words[] =
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
        "incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud ";
    std::string out;
    out.reserve(size);
    char head[80];
    std::snprintf(head, sizeof head, "%s%010zu\r\nSubject: liblmtp benchmark\r\n\r\n", kSizeHeader, size);
    out += head;
    std::uint32_t state = 12345;
    for (std::size_t line = 0; out.size() < size; ++line) {
        std::size_t remaining = size - out.size();
        std::size_t len = remaining <= 80 ? remaining : 78;  // the last line takes what is left (>= 3)
        std::size_t text = len - 2;
        for (std::size_t i = 0; i < text; ++i) {
            state = state * 1103515245u + 12345u;
            char c = words[(state >> 16) % (sizeof words - 1)];
            if (i == 0 && line % 7 == 0) c = '.';
            out += c;
        }
        out += "\r\n";
    }
    return out;
}

}  // namespace sink
