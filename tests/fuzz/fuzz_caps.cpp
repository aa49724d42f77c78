// Capability parser (LHLO reply -> Capabilities), checked against what
// capabilities.hpp promises:
//   - parsing is deterministic;
//   - the domain is the first word of the first line;
//   - every entry's keyword is upper-cased, a valid ehlo-keyword, unique, and
//     the first word of some line (or AUTH, from the old "AUTH=" form);
//     its parameters are trimmed and made of words of the input;
//   - has() and params() find a keyword under every case and nothing else;
//   - size_limit() is the SIZE value when it is a decimal number that fits
//     in 64 bits, else 0 (reference computed another way);
//   - the AUTH mechanisms are upper-cased, unique words of the input, and
//     cover every word of the AUTH entry;
//   - the entries survive a round trip (written back as a reply and parsed),
//     and flipping the case of every capability line changes nothing but
//     the case of the parameters.
// The input goes in twice: as bytes through the ReplyParser (strict and with
// bare LF allowed), every reply it yields; and cut at LF into the lines of a
// reply built directly, so that lines the parser would refuse (with CR, NUL)
// reach Capabilities::parse too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "lmtp/capabilities.hpp"
#include "lmtp/reply.hpp"

namespace {

using fuzz::require;
using lmtp::Capabilities;

bool space(char c) {
    return c == ' ' || c == '\t';
}

char flip_case(char c) {
    if (c >= 'a' && c <= 'z') return static_cast<char>(c - 'a' + 'A');
    if (c >= 'A' && c <= 'Z') return static_cast<char>(c - 'A' + 'a');
    return c;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'a' && c <= 'z') c = flip_case(c);
    return out;
}

std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && space(s[i])) ++i;
        std::size_t start = i;
        while (i < s.size() && !space(s[i])) ++i;
        if (i > start) out.push_back(s.substr(start, i - start));
    }
    return out;
}

bool starts_with_auth_eq(std::string_view word) {
    return word.size() >= 5 && upper(word.substr(0, 5)) == "AUTH=";
}

// Every word of the capability lines, upper-cased; for "AUTH=X" also "X".
std::vector<std::string> input_words(const lmtp::Reply& reply) {
    std::vector<std::string> out;
    for (std::size_t i = 1; i < reply.lines.size(); ++i) {
        for (std::string_view w : words(reply.lines[i])) {
            out.push_back(upper(w));
            if (starts_with_auth_eq(w)) out.push_back(upper(w.substr(5)));
        }
    }
    return out;
}

bool contains(const std::vector<std::string>& list, const std::string& s) {
    for (const auto& x : list)
        if (x == s) return true;
    return false;
}

bool valid_keyword(std::string_view k) {
    auto alnum = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
    if (k.empty() || !alnum(k[0])) return false;
    for (char c : k)
        if (!alnum(c) && c != '-') return false;
    return true;
}

// Reference for size_limit(): digits only, compared as text against 2^64-1.
std::uint64_t reference_size(const Capabilities& caps) {
    auto p = caps.params("SIZE");
    if (!p || p->empty()) return 0;
    for (char c : *p)
        if (c < '0' || c > '9') return 0;
    std::string_view digits = *p;
    while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
    const std::string_view max = "18446744073709551615";
    if (digits.size() > max.size() || (digits.size() == max.size() && digits > max)) return 0;
    std::uint64_t v = 0;
    for (char c : digits) v = v * 10 + static_cast<std::uint64_t>(c - '0');
    return v;
}

// The keyword with its letters' case chosen by the bits of `pattern`.
std::string mixed_case(std::string_view k, std::uint32_t pattern) {
    std::string out(k);
    for (std::size_t i = 0; i < out.size(); ++i)
        if ((pattern >> (i % 32)) & 1u) out[i] = flip_case(out[i]);
    return out;
}

bool same_entries(const Capabilities& a, const Capabilities& b, bool params_any_case) {
    const auto& x = a.entries();
    const auto& y = b.entries();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (x[i].keyword != y[i].keyword) return false;
        if (params_any_case ? !lmtp::iequals(x[i].params, y[i].params) : x[i].params != y[i].params) return false;
    }
    return true;
}

bool same(const Capabilities& a, const Capabilities& b) {
    return same_entries(a, b, false) && a.domain() == b.domain() && a.size_limit() == b.size_limit() &&
           a.auth_mechanisms() == b.auth_mechanisms() && a.empty() == b.empty();
}

void check_lookups(const Capabilities& caps, std::uint32_t pattern) {
    const auto& entries = caps.entries();
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        require(valid_keyword(e.keyword), "an entry's keyword is not an upper-case ehlo-keyword");
        for (std::size_t j = 0; j < i; ++j) require(entries[j].keyword != e.keyword, "a keyword is listed twice");
        require(e.params.empty() || (!space(e.params.front()) && !space(e.params.back())),
                "an entry's parameters are not trimmed");
        for (const std::string& k : {e.keyword, mixed_case(e.keyword, pattern), mixed_case(e.keyword, ~0u)}) {
            require(caps.has(k), "a keyword is not found under another case");
            auto p = caps.params(k);
            require(p && *p == e.params, "params() differs from the entry under another case");
        }
        // A longer or shorter word is another keyword.
        require(caps.has(e.keyword + "X") == caps.has(mixed_case(e.keyword + "x", pattern)),
                "has() of an absent keyword depends on case");
    }
    require(!caps.has(""), "the empty keyword is found");
    for (const char* k : {"SIZE", "AUTH", "PIPELINING", "CHUNKING", "8BITMIME", "STARTTLS", "DSN", "SMTPUTF8"}) {
        bool listed = false;
        for (const auto& e : entries) listed = listed || e.keyword == k;
        require(caps.has(k) == listed && caps.has(mixed_case(k, pattern)) == listed,
                "has() disagrees with entries()");
    }
}

void check(const lmtp::Reply& reply, std::uint32_t pattern) {
    const Capabilities caps = Capabilities::parse(reply);
    require(same(caps, Capabilities::parse(reply)), "parsing the same reply twice gives different results");

    // The domain.
    if (reply.lines.empty()) {
        require(caps.empty(), "no lines, yet not empty");
        return;
    }
    auto first = words(reply.lines[0]);
    require(caps.domain() == (first.empty() ? std::string_view{} : first[0]),
            "the domain is not the first word of the first line");
    require(caps.empty() == (caps.entries().empty() && caps.domain().empty()), "empty() is wrong");

    // Entries come from the input.
    const std::vector<std::string> in_words = input_words(reply);
    for (const auto& e : caps.entries()) {
        bool found = false;
        for (std::size_t i = 1; i < reply.lines.size() && !found; ++i) {
            auto w = words(reply.lines[i]);
            found = !w.empty() && (upper(w[0]) == e.keyword || (e.keyword == "AUTH" && starts_with_auth_eq(w[0])));
        }
        require(found, "an entry's keyword does not start any line");
        for (std::string_view w : words(e.params))
            require(contains(in_words, upper(w)), "an entry's parameters hold a word not in the input");
    }
    check_lookups(caps, pattern);

    // SIZE.
    require(caps.size_limit() == reference_size(caps), "size_limit() does not match the SIZE parameter");

    // AUTH.
    const auto& mechs = caps.auth_mechanisms();
    for (std::size_t i = 0; i < mechs.size(); ++i) {
        require(!mechs[i].empty() && words(mechs[i]).size() == 1 && words(mechs[i])[0] == mechs[i],
                "an AUTH mechanism is empty or holds a space");
        require(upper(mechs[i]) == mechs[i], "an AUTH mechanism is not upper-cased");
        require(contains(in_words, mechs[i]), "an AUTH mechanism is not a word of the input");
        for (std::size_t j = 0; j < i; ++j) require(mechs[j] != mechs[i], "an AUTH mechanism is listed twice");
    }
    require(mechs.empty() || caps.has("AUTH"), "AUTH mechanisms without an AUTH entry");
    std::vector<std::string> auth_words;  // the AUTH entry's words, upper-cased, first occurrence only
    if (auto p = caps.params("auth")) {
        for (std::string_view w : words(*p)) {
            std::string m = upper(w);
            require(contains(mechs, m), "a word of the AUTH entry is not among the mechanisms");
            if (!contains(auth_words, m)) auth_words.push_back(m);
        }
    }

    // Round trip: the entries written back as a reply read the same.
    lmtp::Reply back;
    back.code = 250;
    back.lines.push_back(caps.domain());
    for (const auto& e : caps.entries()) back.lines.push_back(e.params.empty() ? e.keyword : e.keyword + ' ' + e.params);
    const Capabilities again = Capabilities::parse(back);
    require(same_entries(caps, again, false) && again.domain() == caps.domain() &&
                again.size_limit() == caps.size_limit() && again.auth_mechanisms() == auth_words,
            "the capabilities written back as a reply read differently");

    // Case: only the parameters' case may change.
    lmtp::Reply flipped = reply;
    for (std::size_t i = 1; i < flipped.lines.size(); ++i)
        for (char& c : flipped.lines[i]) c = flip_case(c);
    const Capabilities other = Capabilities::parse(flipped);
    require(same_entries(caps, other, true) && other.domain() == caps.domain() &&
                other.size_limit() == caps.size_limit() && other.auth_mechanisms() == mechs,
            "the case of the capability lines changes the result");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::uint32_t pattern = 0x9e3779b9u;
    for (unsigned char c : in) pattern = (pattern ^ c) * 16777619u;

    // Bytes -> replies -> capabilities.
    for (bool bare_lf : {false, true}) {
        lmtp::ReplyLimits limits;
        limits.accept_bare_lf = bare_lf;
        for (const lmtp::Reply& r : fuzz::parse_replies(in, limits)) check(r, pattern);
    }

    // Lines -> capabilities, without the parser's checks.
    lmtp::Reply direct;
    direct.code = 250;
    std::size_t pos = 0;
    while (pos <= in.size()) {
        std::size_t lf = in.find('\n', pos);
        if (lf == std::string_view::npos) lf = in.size();
        direct.lines.emplace_back(in.substr(pos, lf - pos));
        pos = lf + 1;
    }
    check(direct, pattern);
    return 0;
}
