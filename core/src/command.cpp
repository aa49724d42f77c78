#include "lmtp/command.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

#include "lmtp/capabilities.hpp"
#include "lmtp/reply.hpp"
#include "lmtp/status.hpp"

namespace lmtp {

namespace {

constexpr std::size_t kSizeAllowance = 26;      // RFC 1870 section 3
constexpr std::size_t kMailDsnAllowance = 100;  // RFC 3461 section 4 (RET, ENVID)
constexpr std::size_t kRcptDsnAllowance = 500;  // RFC 3461 section 4 (NOTIFY, ORCPT)
constexpr std::size_t kSmtputf8Allowance = 10;  // RFC 6531 section 3.4
constexpr std::size_t kMaxEnvid = 100;          // RFC 3461 section 4.4
constexpr std::size_t kMaxOrcpt = 500;          // RFC 3461 section 4.2

const char kHex[] = "0123456789ABCDEF";

bool alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

[[noreturn]] void bad(const std::string& what) {
    throw Error(Status::bad_input, what);
}

// No CR, LF, NUL or other control character may reach a command line.
void check_chars(std::string_view s, const char* what) {
    for (unsigned char c : s) {
        if (c >= 0x20 && c != 0x7f) continue;
        if (c == '\r') bad(std::string(what) + " contains a carriage return (CR)");
        if (c == '\n') bad(std::string(what) + " contains a line feed (LF)");
        if (c == '\0') bad(std::string(what) + " contains a NUL byte");
        std::string hex = {kHex[c >> 4], kHex[c & 15]};
        bad(std::string(what) + " contains the control character 0x" + hex);
    }
}

// A number in decimal, without a temporary string.
void append_number(std::string& out, std::uint64_t n) {
    char digits[20];
    out.append(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
}

void check_nonempty(std::string_view s, const char* what) {
    if (s.empty()) throw Error(Status::invalid_argument, std::string(what) + " is empty");
}

std::string finish(std::string line, std::size_t max_line) {
    line += "\r\n";
    if (line.size() > max_line) {
        std::string verb = command_verb(line);
        throw Error(Status::line_too_long, verb + " command line would be " + std::to_string(line.size()) +
                                               " octets, over the limit of " + std::to_string(max_line));
    }
    return line;
}

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
void check_keyword(std::string_view k, const char* what) {
    check_chars(k, what);
    if (k.empty() || !alnum(k[0])) bad(std::string(what) + " '" + std::string(k) + "' is not a valid keyword");
    for (char c : k)
        if (!alnum(c) && c != '-') bad(std::string(what) + " '" + std::string(k) + "' is not a valid keyword");
}

// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531)
void check_value(std::string_view keyword, std::string_view v) {
    std::string what = "value of parameter " + std::string(keyword);
    check_chars(v, what.c_str());
    if (v.empty()) bad(what + " is empty");
    for (unsigned char c : v) {
        if (c == ' ') bad(what + " contains a space");
        if (c == '=') bad(what + " contains '='");
    }
}

void append_params(std::string& line, const std::vector<Param>& extra) {
    for (const auto& p : extra) {
        check_keyword(p.keyword, "parameter");
        line += ' ';
        line += p.keyword;
        if (p.value) {
            check_value(p.keyword, *p.value);
            line += '=';
            line += *p.value;
        }
    }
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

std::string with_arg(const char* verb, std::string_view arg, const char* what, std::size_t max_line) {
    check_chars(arg, what);
    check_nonempty(arg, what);
    return finish(std::string(verb) + ' ' + std::string(arg), max_line);
}

// One word of a parameter list on the wire: KEYWORD or KEYWORD=VALUE, checked
// as an esmtp-param. `label` names it in error messages.
struct Word {
    std::string label;    // "MAIL FROM parameter 'SIZE=12'"
    std::string keyword;  // upper-cased
    std::optional<std::string_view> value;

    [[noreturn]] void refuse(const std::string& why) const { bad(label + ": " + why); }
    std::string_view need_value() const {
        if (!value) refuse(keyword + " needs a value (" + keyword + "=...)");
        return *value;
    }
    void no_value() const {
        if (value) refuse(keyword + " takes no value");
    }
    // The value as xtext (RFC 3461 4), decoded; it must not decode to a control character.
    std::string xtext(std::string_view v) const {
        for (unsigned char c : v)
            if (c > 126) refuse("the value is not xtext (a byte outside 33-126)");
        std::string raw;
        try {
            raw = xtext_decode(v);
        } catch (const Error& e) {
            refuse(e.what());
        }
        check_chars(raw, (label + " decoded").c_str());
        return raw;
    }
};

// Calls take(word, keyword as given) for each word of `wire`, in order; runs
// of spaces are one separator. `what` names a word in messages: "MAIL FROM parameter".
template <typename Take>
void each_word(std::string_view wire, const char* what, Take&& take) {
    std::size_t i = 0;
    while (i < wire.size()) {
        if (wire[i] == ' ') {
            ++i;
            continue;
        }
        std::size_t end = wire.find(' ', i);
        if (end == std::string_view::npos) end = wire.size();
        std::string_view text = wire.substr(i, end - i);
        i = end;
        Word w;
        w.label = std::string(what) + " '" + printable(text) + "'";
        check_chars(text, w.label.c_str());
        std::size_t eq = text.find('=');
        std::string_view keyword = text.substr(0, eq);
        check_keyword(keyword, what);
        if (eq != std::string_view::npos) {
            w.value = text.substr(eq + 1);
            check_value(keyword, *w.value);
        }
        w.keyword = upper(keyword);
        take(w, keyword);
    }
}

Param extra_param(std::string_view keyword, const Word& w) {
    Param p;
    p.keyword = std::string(keyword);
    if (w.value) p.value = std::string(*w.value);
    return p;
}

std::uint64_t size_value(const Word& w) {
    std::uint64_t n = 0;
    for (char c : w.need_value()) {
        if (c < '0' || c > '9') w.refuse("the size is not a number of octets");
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (n > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) w.refuse("the size does not fit in 64 bits");
        n = n * 10 + digit;
    }
    return n;
}

// The keywords of a parameter's value and what each means, in the order they are sent.
template <typename T>
using Names = std::pair<const char*, T>;
const Names<BodyType> kBodyTypes[] = {
    {"7BIT", BodyType::seven_bit}, {"8BITMIME", BodyType::eight_bit_mime}, {"BINARYMIME", BodyType::binary_mime}};
const Names<Ret> kRets[] = {{"FULL", Ret::full}, {"HDRS", Ret::hdrs}};
const Names<unsigned> kNotifies[] = {
    {"NEVER", notify_never}, {"SUCCESS", notify_success}, {"FAILURE", notify_failure}, {"DELAY", notify_delay}};

// What `name` (in any case) means in `names`; false when it is none of them.
template <typename T, std::size_t N>
bool lookup(std::string_view name, const Names<T> (&names)[N], T& out) {
    const std::string key = upper(name);
    for (const auto& [n, value] : names) {
        if (key == n) {
            out = value;
            return true;
        }
    }
    return false;
}

unsigned notify_value(const Word& w) {
    std::string_view list = w.need_value();
    unsigned flags = 0;
    for (;;) {
        std::size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        unsigned flag = 0;
        if (item.empty()) w.refuse("an empty NOTIFY keyword");
        if (!lookup(item, kNotifies, flag))
            w.refuse("'" + upper(item) + "' is not a NOTIFY keyword (NEVER, or SUCCESS, FAILURE, DELAY)");
        flags |= flag;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    if ((flags & notify_never) && flags != notify_never)
        w.refuse("NEVER cannot be combined with SUCCESS, FAILURE or DELAY");
    return flags;
}

// The parameters of `wire`: known(p, word) takes each word it knows into `p`
// and returns false for any other, which goes to p.extra as it is.
template <typename Params, typename Known>
Params parse_known(std::string_view wire, const char* what, Known&& known) {
    Params p;
    each_word(wire, what, [&](const Word& w, std::string_view keyword) {
        if (!known(p, w)) p.extra.push_back(extra_param(keyword, w));
    });
    return p;
}

using Needs = std::vector<std::pair<std::string, std::string>>;

Needs not_offered(const Needs& needs, const Capabilities& caps) {
    Needs out;
    for (const auto& need : needs)
        if (!caps.has(need.first)) out.push_back(need);
    return out;
}

}  // namespace

namespace {

// The extension each parameter needs, in order, with the parameter's name: f(extension,
// parameter) until f returns false. The one list required_extensions and first_unoffered read.
template <typename F>
void each_need(const MailParams& p, F&& f) {
    if (p.size && !f("SIZE", "SIZE")) return;
    if ((p.body == BodyType::seven_bit || p.body == BodyType::eight_bit_mime) && !f("8BITMIME", "BODY")) return;
    if (p.body == BodyType::binary_mime && !f("BINARYMIME", "BODY")) return;
    if (p.smtputf8 && !f("SMTPUTF8", "SMTPUTF8")) return;
    if (p.ret != Ret::none && !f("DSN", "RET")) return;
    if (!p.envid.empty() && !f("DSN", "ENVID")) return;
    if (!p.transid.empty() && !f("CHECKPOINT", "TRANSID")) return;
    for (const auto& e : p.extra) {
        const std::string keyword = upper(e.keyword);
        if (!f(keyword, keyword)) return;
    }
}

template <typename F>
void each_need(const RcptParams& p, F&& f) {
    if (p.notify && !f("DSN", "NOTIFY")) return;
    if (!p.orcpt.empty() && !f("DSN", "ORCPT")) return;
    for (const auto& e : p.extra) {
        const std::string keyword = upper(e.keyword);
        if (!f(keyword, keyword)) return;
    }
}

template <typename Params>
Needs needs_of(const Params& p) {
    Needs needs;
    each_need(p, [&](std::string_view extension, std::string_view parameter) {
        needs.emplace_back(extension, parameter);
        return true;
    });
    return needs;
}

template <typename Params>
std::optional<std::pair<std::string, std::string>> first_not_offered(const Params& p, const Capabilities& caps) {
    std::optional<std::pair<std::string, std::string>> missing;
    each_need(p, [&](std::string_view extension, std::string_view parameter) {
        if (caps.has(extension)) return true;
        missing.emplace(extension, parameter);
        return false;
    });
    return missing;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> required_extensions(const MailParams& p) {
    return needs_of(p);
}

std::vector<std::pair<std::string, std::string>> required_extensions(const RcptParams& p) {
    return needs_of(p);
}

std::optional<std::pair<std::string, std::string>> first_unoffered(const MailParams& p, const Capabilities& caps) {
    return first_not_offered(p, caps);
}

std::optional<std::pair<std::string, std::string>> first_unoffered(const RcptParams& p, const Capabilities& caps) {
    return first_not_offered(p, caps);
}

std::vector<std::pair<std::string, std::string>> unoffered(const MailParams& p, const Capabilities& caps) {
    Needs needs = required_extensions(p);
    if (p.body == BodyType::binary_mime) {
        // Right after BINARYMIME's own entry, to keep required_extensions' order.
        auto at = std::find(needs.begin(), needs.end(), std::pair<std::string, std::string>("BINARYMIME", "BODY"));
        needs.emplace(at == needs.end() ? at : at + 1, "CHUNKING", "BODY");
    }
    return not_offered(needs, caps);
}

std::vector<std::pair<std::string, std::string>> unoffered(const RcptParams& p, const Capabilities& caps) {
    return not_offered(required_extensions(p), caps);
}

std::vector<Param> parse_params(std::string_view wire) {
    std::vector<Param> params;
    each_word(wire, "parameter",
              [&](const Word& w, std::string_view keyword) { params.push_back(extra_param(keyword, w)); });
    return params;
}

MailParams parse_mail_params(std::string_view wire) {
    return parse_known<MailParams>(wire, "MAIL FROM parameter", [](MailParams& p, const Word& w) {
        if (w.keyword == "SIZE") {
            p.size = size_value(w);
        } else if (w.keyword == "BODY") {
            if (!lookup(w.need_value(), kBodyTypes, p.body))
                w.refuse("the body type is not 7BIT, 8BITMIME or BINARYMIME");
        } else if (w.keyword == "SMTPUTF8") {
            w.no_value();
            p.smtputf8 = true;
        } else if (w.keyword == "RET") {
            if (!lookup(w.need_value(), kRets, p.ret)) w.refuse("RET is FULL or HDRS");
        } else if (w.keyword == "ENVID") {
            p.envid = w.xtext(w.need_value());
        } else if (w.keyword == "TRANSID") {
            std::string_view v = w.need_value();
            if (v.size() >= 2 && v.front() == '<' && v.back() == '>') v = v.substr(1, v.size() - 2);
            angle_path(v, w.label.c_str());  // only to check it
            p.transid = std::string(v);
        } else {
            return false;
        }
        return true;
    });
}

RcptParams parse_rcpt_params(std::string_view wire) {
    return parse_known<RcptParams>(wire, "RCPT TO parameter", [](RcptParams& p, const Word& w) {
        if (w.keyword == "NOTIFY") {
            p.notify = notify_value(w);
        } else if (w.keyword == "ORCPT") {
            std::string_view v = w.need_value();
            std::size_t semi = v.find(';');
            if (semi == std::string_view::npos || semi + 1 == v.size())
                w.refuse("ORCPT is an address type, ';' and the address in xtext (rfc822;a@example.org)");
            std::string_view type = v.substr(0, semi);
            check_keyword(type, (w.label + ": the address type").c_str());
            p.orcpt_type = std::string(type);
            p.orcpt = w.xtext(v.substr(semi + 1));
        } else {
            return false;
        }
        return true;
    });
}

std::string xtext_encode(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (unsigned char c : raw) {
        if (c < 33 || c > 126 || c == '+' || c == '=') {
            out += '+';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

std::string xtext_decode(std::string_view xtext) {
    auto hexval = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    std::string out;
    for (std::size_t i = 0; i < xtext.size(); ++i) {
        if (xtext[i] != '+') {
            out += xtext[i];
            continue;
        }
        if (i + 2 >= xtext.size()) bad("xtext ends inside a '+XX' escape");
        int hi = hexval(xtext[i + 1]), lo = hexval(xtext[i + 2]);
        if (hi < 0 || lo < 0) bad("xtext has a malformed '+XX' escape: '" + std::string(xtext.substr(i, 3)) + "'");
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

namespace {

// Octets an address may hold without a closer look: printable ASCII but the
// quote, the backslash and the angle brackets.
constexpr bool plain_octet(unsigned char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>';
}

// What an address that is not all plain octets must pass.
void check_path(std::string_view address, std::string_view inner, const char* what) {
    check_chars(address, what);
    // '<' and '>' may appear only inside a quoted local part; anywhere else they
    // would end the path early and let text after it pass as parameters.
    bool quoted = false;
    for (std::size_t i = 0; i < inner.size(); ++i) {
        char c = inner[i];
        if (quoted && c == '\\') {
            ++i;
        } else if (c == '"') {
            quoted = !quoted;
        } else if (!quoted && (c == '<' || c == '>')) {
            bad(std::string(what) + " contains '" + c + "' outside a quoted string");
        }
    }
}

}  // namespace

std::string angle_path(std::string_view address, const char* what) {
    std::string path;
    append_angle_path(path, address, what);
    return path;
}

std::size_t append_angle_path(std::string& out, std::string_view address, const char* what) {
    std::string_view inner = address;
    bool bracketed = address.size() >= 2 && address.front() == '<' && address.back() == '>';
    if (bracketed) inner = address.substr(1, address.size() - 2);
    if (!std::all_of(inner.begin(), inner.end(), [](char c) { return plain_octet(static_cast<unsigned char>(c)); }))
        check_path(address, inner, what);
    const std::size_t at = out.size();
    out.resize(at + inner.size() + 2);
    char* path = &out[at];
    path[0] = '<';
    if (!inner.empty()) std::memcpy(path + 1, inner.data(), inner.size());
    path[inner.size() + 1] = '>';
    return inner.size();
}

std::string command_verb(std::string_view line) {
    std::size_t end = line.find_first_of(" \r\n");
    return upper(line.substr(0, end));
}

namespace cmd {

std::string lhlo(std::string_view domain, std::size_t max_line) {
    check_chars(domain, "LHLO domain");
    check_nonempty(domain, "LHLO domain");
    if (domain.find(' ') != std::string_view::npos) bad("LHLO domain contains a space");
    return finish("LHLO " + std::string(domain), max_line);
}

std::string mail(MailVerb verb, std::string_view from, const MailParams& p, std::size_t max_line) {
    static const char* const verbs[] = {"MAIL", "SEND", "SOML", "SAML"};
    std::string line;
    line.reserve(from.size() + 64);  // the path, SIZE and a BODY, CRLF: one allocation
    line += verbs[static_cast<int>(verb)];
    line += " FROM:";
    append_angle_path(line, from, "MAIL FROM address");
    // Net::SMTP's order (SIZE, RET, BODY, TRANSID, ENVID), so that logs
    // compare; SMTPUTF8 after BODY, the caller's extras last.
    std::size_t allowance = 0;
    if (p.size) {
        line += " SIZE=";
        append_number(line, *p.size);
        allowance += kSizeAllowance;
    }
    bool dsn = p.ret != Ret::none;
    if (p.ret == Ret::full) line += " RET=FULL";
    if (p.ret == Ret::hdrs) line += " RET=HDRS";
    switch (p.body) {
        case BodyType::none: break;
        case BodyType::seven_bit: line += " BODY=7BIT"; break;
        case BodyType::eight_bit_mime: line += " BODY=8BITMIME"; break;
        case BodyType::binary_mime: line += " BODY=BINARYMIME"; break;
    }
    if (p.smtputf8) {
        line += " SMTPUTF8";
        allowance += kSmtputf8Allowance;
    }
    if (!p.transid.empty()) {
        line += " TRANSID=";
        append_angle_path(line, p.transid, "TRANSID");
    }
    if (!p.envid.empty()) {
        check_chars(p.envid, "ENVID");
        std::string enc = xtext_encode(p.envid);
        if (enc.size() > kMaxEnvid)
            bad("ENVID is " + std::to_string(enc.size()) + " characters once encoded, over the 100 of RFC 3461");
        line += " ENVID=" + enc;
        dsn = true;
    }
    if (dsn) allowance += kMailDsnAllowance;
    append_params(line, p.extra);
    return finish(std::move(line), max_line + allowance);
}

std::string rcpt(std::string_view to, const RcptParams& p, std::size_t max_line) {
    std::string line;
    line.reserve(to.size() + 32);  // the path and CRLF: one allocation
    line += "RCPT TO:";
    if (append_angle_path(line, to, "RCPT TO address") == 0)  // no null forward-path
        throw Error(Status::invalid_argument, "RCPT TO address is empty");
    std::size_t allowance = 0;
    if (p.notify) {
        const unsigned all = notify_never | notify_success | notify_failure | notify_delay;
        if (p.notify & ~all) throw Error(Status::invalid_argument, "NOTIFY has an unknown flag");
        if ((p.notify & notify_never) && p.notify != notify_never)
            bad("NOTIFY=NEVER cannot be combined with SUCCESS, FAILURE or DELAY");
        char sep = '=';
        line += " NOTIFY";
        for (const auto& [name, flag] : kNotifies) {
            if (!(p.notify & flag)) continue;
            line += sep;
            line += name;
            sep = ',';
        }
        allowance = kRcptDsnAllowance;
    }
    if (!p.orcpt.empty()) {
        check_chars(p.orcpt, "ORCPT");
        check_keyword(p.orcpt_type, "ORCPT address type");
        std::string value = p.orcpt_type + ";" + xtext_encode(p.orcpt);
        if (value.size() > kMaxOrcpt)
            bad("ORCPT is " + std::to_string(value.size()) + " characters once encoded, over the 500 of RFC 3461");
        line += " ORCPT=" + value;
        allowance = kRcptDsnAllowance;
    }
    append_params(line, p.extra);
    return finish(std::move(line), max_line + allowance);
}

std::string data() {
    return "DATA\r\n";
}
std::string bdat(std::uint64_t size, bool last) {
    std::string line = "BDAT ";
    append_number(line, size);
    line += last ? " LAST\r\n" : "\r\n";
    return line;
}
std::string rset() {
    return "RSET\r\n";
}
std::string noop() {
    return "NOOP\r\n";
}
std::string quit() {
    return "QUIT\r\n";
}

std::string verify(std::string_view address, std::size_t max_line) {
    return with_arg("VRFY", address, "VRFY argument", max_line);
}
std::string expand(std::string_view list, std::size_t max_line) {
    return with_arg("EXPN", list, "EXPN argument", max_line);
}
std::string help(std::string_view topic, std::size_t max_line) {
    if (topic.empty()) return "HELP\r\n";
    return with_arg("HELP", topic, "HELP topic", max_line);
}
std::string etrn(std::string_view domain, std::size_t max_line) {
    return with_arg("ETRN", domain, "ETRN argument", max_line);
}

std::string raw(std::string_view line, std::size_t max_line) {
    check_chars(line, "command line");
    check_nonempty(line, "command line");
    return finish(std::string(line), max_line);
}

std::string starttls() {
    return "STARTTLS\r\n";
}

namespace {
bool base64_chars(std::string_view s) {
    for (char c : s)
        if (!(alnum(c) || c == '+' || c == '/' || c == '=')) return false;
    return true;
}
}  // namespace

std::string auth(std::string_view mechanism, const std::optional<std::string>& initial_base64, std::size_t max_line) {
    check_keyword(mechanism, "SASL mechanism");
    std::string line = "AUTH " + std::string(mechanism);
    if (initial_base64) {
        if (!base64_chars(*initial_base64)) bad("AUTH initial response is not base64");
        line += ' ';
        line += initial_base64->empty() ? std::string("=") : *initial_base64;
    }
    return finish(std::move(line), max_line);
}

std::string auth_response(std::string_view base64) {
    constexpr std::size_t kMaxAuthLine = 12288;  // RFC 4954 section 4
    if (base64 != "*" && !base64_chars(base64)) bad("AUTH response is not base64");
    return finish(std::string(base64), kMaxAuthLine);
}

}  // namespace cmd
}  // namespace lmtp
