#include "lmtp/capabilities.hpp"

#include <algorithm>
#include <limits>

namespace lmtp {

namespace {

char upper(char c) {
    return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}
bool alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")  (RFC 5321 4.1.1.1)
bool valid_keyword(std::string_view k) {
    if (k.empty() || !alnum(k[0])) return false;
    for (char c : k)
        if (!alnum(c) && c != '-') return false;
    return true;
}

std::string to_upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = upper(c);
    return out;
}

void add_mechanisms(std::string_view list, std::vector<std::string>& out) {
    while (!list.empty()) {
        list = trim(list);
        std::size_t end = list.find_first_of(" \t");
        std::string_view word = list.substr(0, end);
        if (!word.empty()) {
            std::string mech = to_upper(word);
            bool seen = false;
            for (const auto& m : out) seen = seen || m == mech;
            if (!seen) out.push_back(std::move(mech));
        }
        if (end == std::string_view::npos) break;
        list.remove_prefix(end);
    }
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (upper(a[i]) != upper(b[i])) return false;
    return true;
}

Capabilities Capabilities::parse(const Reply& reply) {
    Capabilities caps;
    if (reply.lines.empty()) return caps;
    std::string_view first = trim(reply.lines[0]);
    caps.domain_ = std::string(first.substr(0, first.find_first_of(" \t")));
    bool have_auth_line = false;
    for (std::size_t i = 1; i < reply.lines.size(); ++i) {
        std::string_view line = trim(reply.lines[i]);
        std::size_t sp = line.find_first_of(" \t");
        std::string_view keyword = line.substr(0, sp);
        std::string_view params = sp == std::string_view::npos ? std::string_view{} : trim(line.substr(sp));
        if (keyword.size() > 5 && iequals(keyword.substr(0, 5), "AUTH=")) {
            // The pre-RFC 4954 form "AUTH=LOGIN PLAIN" some servers still send.
            add_mechanisms(keyword.substr(5), caps.auth_);
            add_mechanisms(params, caps.auth_);
            if (!have_auth_line) {
                std::string all(keyword.substr(5));
                if (!params.empty()) all += ' ' + std::string(params);
                caps.entries_.erase(std::remove_if(caps.entries_.begin(), caps.entries_.end(),
                                                   [](const Entry& e) { return e.keyword == "AUTH"; }),
                                    caps.entries_.end());
                caps.entries_.push_back({"AUTH", std::move(all)});
            }
            continue;
        }
        if (!valid_keyword(keyword)) continue;
        std::string key = to_upper(keyword);
        for (auto it = caps.entries_.begin(); it != caps.entries_.end(); ++it) {
            if (it->keyword == key) {
                caps.entries_.erase(it);
                break;
            }
        }
        if (key == "AUTH") {
            have_auth_line = true;
            add_mechanisms(params, caps.auth_);
        }
        caps.entries_.push_back({key, std::string(params)});
    }
    caps.size_limit_ = 0;
    if (auto p = caps.params("SIZE")) {
        std::uint64_t v = 0;
        bool ok = !p->empty();
        for (char c : *p) {
            std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
            if (c < '0' || c > '9' || v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
                ok = false;  // not a number, or too big for 64 bits
                break;
            }
            v = v * 10 + digit;
        }
        caps.size_limit_ = ok ? v : 0;
    }
    caps.offered_.pipelining = caps.has("PIPELINING");
    caps.offered_.chunking = caps.has("CHUNKING");
    caps.offered_.size = caps.has("SIZE");
    return caps;
}

bool Capabilities::has(std::string_view keyword) const {
    return params(keyword).has_value();
}

std::optional<std::string_view> Capabilities::params(std::string_view keyword) const {
    for (const auto& e : entries_)
        if (iequals(e.keyword, keyword)) return std::string_view(e.params);
    return std::nullopt;
}

}  // namespace lmtp
