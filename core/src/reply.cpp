#include "lmtp/reply.hpp"

#include <cstring>
#include <utility>

namespace lmtp {

namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Reads 1 to 3 digits at text[pos]; returns how many, 0 if none.
std::size_t read_number(std::string_view text, std::size_t pos, int& value) {
    std::size_t n = 0;
    value = 0;
    while (pos + n < text.size() && n < 3 && is_digit(text[pos + n])) {
        value = value * 10 + (text[pos + n] - '0');
        ++n;
    }
    return n;
}

// The lines joined by `sep`: without their enhanced codes (`strip`), and
// each with its own code in front when the codes differ (`codes`).
void join(const Reply& r, std::string_view sep, std::string& out, bool strip, bool codes) {
    for (std::size_t i = 0; i < r.lines.size(); ++i) {
        if (i) out.append(sep);
        if (codes) {
            out += std::to_string(r.line_code(i));
            if (!r.lines[i].empty()) out += ' ';
        }
        std::string_view line = r.lines[i];
        if (strip) {
            EnhancedCode ignored;
            line.remove_prefix(parse_enhanced_code(line, r.line_code(i) / 100, ignored));
        }
        out.append(line);
    }
}

}  // namespace

std::string EnhancedCode::str() const {
    if (!present()) return {};
    return std::to_string(klass) + '.' + std::to_string(subject) + '.' + std::to_string(detail);
}

std::size_t parse_enhanced_code(std::string_view text, int reply_class, EnhancedCode& out) {
    // status-code = class "." subject "." detail (RFC 3463); class is 2, 4 or 5
    // and must be the reply's own class (RFC 2034).
    if (reply_class != 2 && reply_class != 4 && reply_class != 5) return 0;
    if (text.size() < 5 || text[0] != char('0' + reply_class) || text[1] != '.') return 0;
    int subject = 0, detail = 0;
    std::size_t pos = 2;
    std::size_t n = read_number(text, pos, subject);
    if (n == 0) return 0;
    pos += n;
    if (pos >= text.size() || text[pos] != '.') return 0;
    ++pos;
    n = read_number(text, pos, detail);
    if (n == 0) return 0;
    pos += n;
    if (pos < text.size()) {
        if (text[pos] != ' ') return 0;  // "2.1.5x" or a fourth digit: not a code
        ++pos;
    }
    out.klass = reply_class;
    out.subject = subject;
    out.detail = detail;
    return pos;
}

std::string Reply::text() const {
    std::string out;
    join(*this, "\n", out, true, false);
    return out;
}

std::string Reply::message() const {
    std::string out;
    join(*this, "\n", out, false, false);
    return out;
}

Reply Reply::line_reply(std::size_t i) const {
    Reply r;
    if (i >= lines.size()) return r;
    r.code = line_code(i);
    r.lines.push_back(lines[i]);
    parse_enhanced_code(lines[i], r.code / 100, r.enhanced);
    return r;
}

std::string Reply::summary() const {
    std::string out;
    if (mixed()) {  // "250 Ok; 550 <b@x> Failed; 250 Ok"
        join(*this, "; ", out, false, true);
        return out;
    }
    out = std::to_string(code);
    if (!lines.empty() && !(lines.size() == 1 && lines[0].empty())) {
        out += ' ';
        join(*this, "; ", out, false, false);
    }
    return out;
}

std::string printable(std::string_view bytes, std::size_t max) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : bytes) {
        if (out.size() >= max) {
            out += "...";
            break;
        }
        switch (c) {
            case '\r': out += "\\r"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\\': out += "\\\\"; break;
            default:
                if (c >= 0x20 && c < 0x7f) {
                    out += static_cast<char>(c);
                } else {
                    out += "\\x";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                }
        }
    }
    return out;
}

ReplyParser::ReplyParser(const ReplyLimits& limits) : limits_(limits) {}

void ReplyParser::reset() {
    line_.clear();
    reply_ = Reply{};
    size_ = 0;
    complete_ = false;
    error_.clear();
}

void ReplyParser::fail(std::string message) {
    error_ = std::move(message);
    line_.clear();
}

Reply ReplyParser::take() {
    Reply r = std::move(reply_);
    reply_ = Reply{};
    size_ = 0;
    complete_ = false;
    return r;
}

ReplyParser::Result ReplyParser::feed(const char* data, std::size_t len, std::size_t& consumed) {
    consumed = 0;
    if (failed()) return Result::error;
    if (complete_) return Result::reply;
    std::size_t i = 0;
    while (i < len) {
        const void* lf = std::memchr(data + i, '\n', len - i);
        std::size_t end = lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - data) + 1 : len;
        std::size_t n = end - i;
        if (line_.size() + n > limits_.max_reply_line) {
            consumed = i;
            fail("reply line longer than " + std::to_string(limits_.max_reply_line) + " octets (max_reply_line): '" +
                 printable(line_ + std::string(data + i, n > 40 ? 40 : n)) + "'");
            return Result::error;
        }
        if (size_ + n > limits_.max_reply_size) {
            consumed = i;
            fail("reply larger than " + std::to_string(limits_.max_reply_size) + " octets (max_reply_size) after " +
                 std::to_string(reply_.lines.size()) + " lines");
            return Result::error;
        }
        line_.append(data + i, n);
        size_ += n;
        i = end;
        if (!lf) break;

        std::string_view line(line_);
        line.remove_suffix(1);  // LF
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        } else if (!limits_.accept_bare_lf) {
            consumed = i;
            fail("reply line ends with a bare LF instead of CRLF: '" + printable(line) + "'");
            return Result::error;
        }
        bool last = finish_line(line);
        if (failed()) {
            consumed = i;
            return Result::error;
        }
        line_.clear();
        if (last) {
            complete_ = true;
            consumed = i;
            return Result::reply;
        }
    }
    consumed = i;
    return Result::need_more;
}

bool ReplyParser::finish_line(std::string_view line) {
    if (std::memchr(line.data(), '\0', line.size())) {
        fail("reply line contains a NUL byte: '" + printable(line) + "'");
        return false;
    }
    if (std::memchr(line.data(), '\r', line.size())) {
        fail("reply line contains a bare CR: '" + printable(line) + "'");
        return false;
    }
    if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2])) {
        fail("reply line does not start with a three-digit code: '" + printable(line) + "'");
        return false;
    }
    // Reply-code = %x32-35 %x30-35 %x30-39 (RFC 5321 4.2)
    if (line[0] < '2' || line[0] > '5' || line[1] > '5') {
        fail("reply code " + std::string(line.substr(0, 3)) + " is out of range (2xx-5xx): '" + printable(line) + "'");
        return false;
    }
    bool last = true;
    if (line.size() > 3) {
        if (line[3] == '-') {
            last = false;
        } else if (line[3] != ' ') {
            fail("reply code not followed by a space or hyphen: '" + printable(line) + "'");
            return false;
        }
    }
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
    if (reply_.lines.empty()) {
        reply_.code = code;
        parse_enhanced_code(text, code / 100, reply_.enhanced);
    } else if (code != reply_.code || !reply_.line_codes.empty()) {
        if (reply_.line_codes.empty()) reply_.line_codes.assign(reply_.lines.size(), reply_.code);
        reply_.line_codes.push_back(code);
    }
    reply_.lines.emplace_back(text);
    return last;
}

}  // namespace lmtp
