// Command lines and their ESMTP parameters, formatted and checked.
//
// Every function returns one complete command line ending in CRLF, or throws
// lmtp::Error without producing anything:
//   Status::bad_input      a CR, LF, NUL (or other control character) in an
//                          address or argument, or a parameter that breaks its syntax;
//   Status::line_too_long  the line would exceed the command-line limit.
// Nothing a caller passes can therefore add a line to the protocol.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lmtp {

// RFC 5321 4.5.3.1.4: a command line, verb and CRLF included, is at most 512
// octets. Extensions raise it for the lines that carry their parameters:
// SIZE +26 (RFC 1870), RET/ENVID +100 and NOTIFY/ORCPT +500 (RFC 3461),
// SMTPUTF8 +10 (RFC 6531). Those allowances are added to the base limit.
constexpr std::size_t kDefaultMaxCommandLine = 512;

enum class MailVerb { mail, send, soml, saml };                        // MAIL / SEND / SOML / SAML FROM:
enum class BodyType { none, seven_bit, eight_bit_mime, binary_mime };  // BODY= (RFC 6152, 3030)
enum class Ret { none, full, hdrs };                                   // RET= (RFC 3461)

// NOTIFY= (RFC 3461): NEVER alone, or any of SUCCESS, FAILURE, DELAY.
enum Notify : unsigned {
    notify_never = 1u,
    notify_success = 2u,
    notify_failure = 4u,
    notify_delay = 8u,
};

// Any other ESMTP parameter: KEYWORD or KEYWORD=value (RFC 5321 esmtp-param).
struct Param {
    std::string keyword;
    std::optional<std::string> value;

    friend bool operator==(const Param& a, const Param& b) { return a.keyword == b.keyword && a.value == b.value; }
};

// Sent in this order: SIZE, RET, BODY, SMTPUTF8, TRANSID, ENVID, extras
// (Net::SMTP's order, so that logs compare).
struct MailParams {
    std::optional<std::uint64_t> size;  // SIZE= (RFC 1870)
    BodyType body = BodyType::none;     // BODY=
    bool smtputf8 = false;              // SMTPUTF8 (RFC 6531)
    Ret ret = Ret::none;                // RET=
    std::string envid;                  // ENVID= (RFC 3461), given raw, sent as xtext
    std::string transid;                // TRANSID= (RFC 1845 CHECKPOINT), an address
    std::vector<Param> extra;           // sent after the others, in order

    friend bool operator==(const MailParams& a, const MailParams& b) {
        return a.size == b.size && a.body == b.body && a.smtputf8 == b.smtputf8 && a.ret == b.ret &&
               a.envid == b.envid && a.transid == b.transid && a.extra == b.extra;
    }
};

struct RcptParams {
    unsigned notify = 0;                // Notify flags; 0 sends no NOTIFY
    std::string orcpt;                  // ORCPT= original recipient, given raw, sent as xtext
    std::string orcpt_type = "rfc822";  // its address type
    std::vector<Param> extra;

    friend bool operator==(const RcptParams& a, const RcptParams& b) {
        return a.notify == b.notify && a.orcpt == b.orcpt && a.orcpt_type == b.orcpt_type && a.extra == b.extra;
    }
};

// The parameters of MAIL FROM and RCPT TO as they are written on the wire, after
// the address: words separated by spaces, each KEYWORD or KEYWORD=VALUE
// ("SIZE=1234 BODY=8BITMIME", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c").
// Keywords, and the values of BODY, RET and NOTIFY, are read in any case. The
// parameters the structs name fill their fields: ENVID and the address of ORCPT
// are xtext on the wire and come out decoded, TRANSID loses its brackets. Any
// other word goes to `extra`, in order. A keyword given twice: the last counts.
// Throws Error(bad_input), with a sentence naming the word, for a CR, LF, NUL
// or other control character anywhere, a number that is none or too big for 64
// bits, a BODY, RET or NOTIFY keyword that does not exist, NEVER with another
// NOTIFY keyword, malformed xtext, a known parameter without its value (or
// SMTPUTF8 with one), and a word that is no esmtp-param (RFC 5321 4.1.2).
MailParams parse_mail_params(std::string_view wire);
RcptParams parse_rcpt_params(std::string_view wire);
// The words alone, each checked as an esmtp-param and kept as it is, a known
// keyword included: what goes after the parameters a caller set one by one.
std::vector<Param> parse_params(std::string_view wire);

// The extension each parameter needs, as (extension keyword, parameter name):
// SIZE needs SIZE, BODY needs 8BITMIME (BINARYMIME for BODY=BINARYMIME),
// SMTPUTF8 needs SMTPUTF8, RET/ENVID/NOTIFY/ORCPT need DSN, TRANSID needs
// CHECKPOINT, and an extra parameter needs the extension of its own name.
std::vector<std::pair<std::string, std::string>> required_extensions(const MailParams& p);
std::vector<std::pair<std::string, std::string>> required_extensions(const RcptParams& p);

class Capabilities;
// The parameters of `p` the server whose LHLO reply gave `caps` cannot take,
// as (extension, parameter) pairs in the order of required_extensions(p): each
// whose extension it did not offer, and BODY=BINARYMIME when it did not offer
// CHUNKING (such a message can only go by BDAT, RFC 3030 3), as ("CHUNKING",
// "BODY"). Empty when it takes them all. What faces ask before they word a
// refusal of their own (Net::SMTP's "option not supported by host").
std::vector<std::pair<std::string, std::string>> unoffered(const MailParams& p, const Capabilities& caps);
std::vector<std::pair<std::string, std::string>> unoffered(const RcptParams& p, const Capabilities& caps);
// The first of required_extensions(p) whose extension the server did not offer,
// or none; without building the list (every delivery asks).
std::optional<std::pair<std::string, std::string>> first_unoffered(const MailParams& p, const Capabilities& caps);
std::optional<std::pair<std::string, std::string>> first_unoffered(const RcptParams& p, const Capabilities& caps);

// RFC 3461 xtext: octets outside 33-126, "+" and "=" become "+XX" (upper-case hex).
std::string xtext_encode(std::string_view raw);
// The inverse; throws Error(bad_input) on a malformed "+XX".
std::string xtext_decode(std::string_view xtext);

// "<address>" for MAIL FROM / RCPT TO. An address already written as
// "<...>" is taken as is; an empty address gives the null path "<>".
std::string angle_path(std::string_view address, const char* what);
// The same appended to `out`; returns the address's length inside the brackets.
std::size_t append_angle_path(std::string& out, std::string_view address, const char* what);

namespace cmd {

std::string lhlo(std::string_view domain, std::size_t max_line = kDefaultMaxCommandLine);
std::string mail(MailVerb verb, std::string_view from, const MailParams& params = {},
                 std::size_t max_line = kDefaultMaxCommandLine);
std::string rcpt(std::string_view to, const RcptParams& params = {}, std::size_t max_line = kDefaultMaxCommandLine);
std::string data();
std::string bdat(std::uint64_t size, bool last);
std::string rset();
std::string noop();
std::string quit();
std::string verify(std::string_view address, std::size_t max_line = kDefaultMaxCommandLine);
std::string expand(std::string_view list, std::size_t max_line = kDefaultMaxCommandLine);
std::string help(std::string_view topic = {}, std::size_t max_line = kDefaultMaxCommandLine);
std::string etrn(std::string_view domain, std::size_t max_line = kDefaultMaxCommandLine);
// A caller's own command line, given without CRLF.
std::string raw(std::string_view line, std::size_t max_line = kDefaultMaxCommandLine);
std::string starttls();
// AUTH mechanism [initial-response]; the response is base64 ("" is sent as
// "=", RFC 4954). Throws Error(line_too_long) if the line would not fit (the
// caller then sends the response after the first 334 instead).
std::string auth(std::string_view mechanism, const std::optional<std::string>& initial_base64,
                 std::size_t max_line = kDefaultMaxCommandLine);
// A response line in an AUTH exchange: base64, or "*" to cancel (RFC 4954
// allows 12288 octets).
std::string auth_response(std::string_view base64);

}  // namespace cmd

// The command verb of a line ("rcpt to:<a>" -> "RCPT"), upper-cased.
std::string command_verb(std::string_view line);

}  // namespace lmtp
