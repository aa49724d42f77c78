// A whole client session against a server whose every byte is fuzzed.
//
// Input: 4 option bytes, then what the server sends, in turns separated by
// NUL bytes (see FuzzTransport).
//   byte 0  bit 0: the first transaction goes by Transfer::automatic (else DATA)
//           bit 1: the second transaction step by step (mail, rcpt, data/bdat)
//                  instead of deliver()
//           bit 2: connect() does not send LHLO; hello() does
//           bit 3: replies may end in a bare LF
//           bit 4: the BDAT message is given canonical (sent as is)
//           bit 5: at the end of input, readable() says so (else only read() finds out)
//           bit 6: once the end of input was read, writes fail (the peer is gone)
//           bit 7: the other pair of messages (one of them empty)
//   byte 1  bits 0-5: BDAT chunk size (0: the default); bits 6-7: BDAT window
//   byte 2, 3  sizes of the pieces read() hands out, in turn (0: as much as asked)
//   bit 5 and 6 concern the end of the last turn (the server closes).
//
// The script: connect (banner, LHLO), a transaction to three recipients (one
// twice) by DATA (or automatic), a second one by BDAT when the server offers
// CHUNKING (else DATA), then QUIT. After each error the client must be closed
// (a further command says not_connected) or usable (idle, not half-way
// through a message; a further command answers or throws lmtp::Error).
//
// Afterwards what the client wrote is read back, command by command, against
// the server's replies counted in order (RFC 2920, RFC 2033): every line ends
// in CRLF and holds no CR, LF or NUL; a message follows DATA only after a 354
// and is dot-stuffed to exactly the message given; BDAT sizes match the bytes
// that follow, and the chunks add up to the message; LAST only when no chunk
// was refused. From the same count each recipient's verdict is worked out
// independently and must be the one the client reported (delivered only on a
// 2xx at that recipient's place), in order, one per recipient.
//
// Any exception other than lmtp::Error, a crash, a leak, undefined behaviour
// or a broken invariant aborts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "lmtp/body.hpp"
#include "lmtp/client.hpp"
#include "lmtp/session.hpp"
#include "lmtp/status.hpp"
#include "lmtp/transport.hpp"

namespace {

using fuzz::require;
using lmtp::Outcome;
using lmtp::Phase;
using lmtp::Reply;

constexpr std::size_t kHeader = 4;
constexpr std::size_t kMaxCalls = 100000;  // reads or writes: far beyond any honest session of this size

const std::vector<std::string> kRecipients = {"anna@example.org", "bob@example.org", "anna@example.org"};
const char* const kSender = "sender@example.org";

struct Options {
    bool first_automatic = false;
    bool second_by_steps = false;
    bool manual_hello = false;
    bool bare_lf = false;
    bool canonical = false;
    bool eof_readable = false;
    bool write_fails_at_eof = false;
    bool other_messages = false;
    std::size_t bdat_chunk = 0;
    std::size_t bdat_window = 0;
    std::size_t pieces[2] = {0, 0};
};

Options read_options(const std::uint8_t* h) {
    Options o;
    bool* const bits[] = {&o.first_automatic, &o.second_by_steps, &o.manual_hello,       &o.bare_lf,
                          &o.canonical,       &o.eof_readable,    &o.write_fails_at_eof, &o.other_messages};
    for (unsigned i = 0; i < 8; ++i) *bits[i] = (h[0] >> i) & 1u;
    o.bdat_chunk = h[1] & 63;
    o.bdat_window = h[1] >> 6;
    o.pieces[0] = h[2];
    o.pieces[1] = h[3];
    return o;
}

// The server. Its bytes come in turns, separated by NUL (which no valid reply
// holds): the first turn at once (the banner), each further turn when the
// client writes after it has read everything sent so far, as a server answers
// what it is sent. read() hands out what was sent in pieces of the sizes the
// options say; with nothing sent it times out (the server is silent), and
// after the last turn it reports the end of the connection. write() records.
class FuzzTransport final : public lmtp::Transport {
public:
    FuzzTransport(std::string_view input, const Options& o, std::string& written)
        : rest_(input), opts_(o), written_(written) {
        next_turn();
    }

    std::size_t read(char* buf, std::size_t cap, lmtp::Deadline) override {
        require(open_, "read() on a closed transport");
        require(cap > 0, "read() with no room");
        require(++calls_ < kMaxCalls, "the client keeps reading or writing without end");
        if (sent_.empty()) {
            if (!last_turn_) throw lmtp::Error(lmtp::Status::timeout, "the server sent nothing");
            eof_ = true;
            return 0;
        }
        std::size_t piece = opts_.pieces[turn_++ % 2];
        std::size_t n = std::min({cap, sent_.size(), piece ? piece : cap});
        std::memcpy(buf, sent_.data(), n);
        sent_.remove_prefix(n);
        return n;
    }
    void write(std::string_view data, lmtp::Deadline) override {
        require(open_, "write() on a closed transport");
        require(++calls_ < kMaxCalls, "the client keeps reading or writing without end");
        if (opts_.write_fails_at_eof && eof_) throw lmtp::Error(lmtp::Status::closed, "the peer is gone");
        written_.append(data);
        if (sent_.empty() && !last_turn_) next_turn();
    }
    bool readable() override { return !sent_.empty() || (last_turn_ && opts_.eof_readable); }
    void close() noexcept override { open_ = false; }
    bool is_open() const override { return open_; }
    bool is_local() const override { return true; }
    std::string peer() const override { return "fuzz"; }

private:
    void next_turn() {
        std::size_t nul = rest_.find('\0');
        last_turn_ = nul == std::string_view::npos;
        sent_ = rest_.substr(0, nul);
        rest_.remove_prefix(last_turn_ ? rest_.size() : nul + 1);
    }

    std::string_view rest_;  // turns not sent yet
    std::string_view sent_;  // sent, not read yet
    bool last_turn_ = false;
    Options opts_;
    std::string& written_;
    std::size_t turn_ = 0;
    std::size_t calls_ = 0;
    bool open_ = true;
    bool eof_ = false;
};

// --- the script ----------------------------------------------------------------

// One call (or step-by-step sequence) that may have run a transaction.
struct Attempt {
    std::size_t from = 0, to = 0;  // what it wrote: [from, to) of the log
    bool returned = false;         // no exception
    bool whole = false;            // deliver(): every recipient must have a verdict on return
    std::size_t rcpts = 0;         // RCPTs asked for
    std::string body;              // the message as it must arrive (DATA decoded / BDAT chunks joined)
    bool body_as_is = false;       // BDAT canonical: `body` is exact; else compared as canonical
    lmtp::Transaction txn;         // the client's results afterwards
};

// The client is closed, or idle and able to take a command.
void check_state(const lmtp::Client& c) {
    const lmtp::Session& s = c.session();
    if (!c.connected()) return;
    require(s.phase() == Phase::connected || s.phase() == Phase::ready || s.phase() == Phase::transaction,
            "connected, but the session is half-way (in a message, a handshake, or greeting)");
    require(s.want() == lmtp::Session::Want::idle && s.awaiting() == 0 && s.output().empty(),
            "connected, but the session still has something to send or read");
}

void check_error(const lmtp::Error& e) {
    require(e.status() != lmtp::Status::ok && e.status() != lmtp::Status::internal,
            "an error with status ok or internal");
    require(std::strlen(e.what()) > 0, "an error without a message");
}

// After an error: closed (then a command says not_connected) or usable.
void probe(lmtp::Client& c) {
    check_state(c);
    const bool was_connected = c.connected();
    try {
        c.noop();
        require(was_connected, "a command worked on a closed client");
    } catch (const lmtp::Error& e) {
        check_error(e);
        require(was_connected || e.status() == lmtp::Status::not_connected,
                "a closed client answered a command with something else than not_connected");
    }
    check_state(c);
}

// Runs `f`; on lmtp::Error checks the error and probes the client.
template <typename F>
bool attempt(lmtp::Client& c, F&& f) {
    try {
        f();
        check_state(c);
        return true;
    } catch (const lmtp::Error& e) {
        if (std::getenv("LMTP_FUZZ_TRACE")) std::fprintf(stderr, "!!! %s: %s\n", lmtp::status_name(e.status()), e.what());
        check_error(e);
        probe(c);
        return false;
    }
}

void run_deliver(lmtp::Client& c, const std::string& log, std::vector<Attempt>& out, std::string_view message,
                 lmtp::Transfer transfer, bool canonical) {
    Attempt a;
    a.from = log.size();
    a.whole = true;
    a.rcpts = kRecipients.size();
    a.body = std::string(message);
    a.body_as_is = canonical && transfer == lmtp::Transfer::bdat;
    a.returned = attempt(c, [&] {
        const lmtp::Transaction& t =
            c.deliver(kSender, kRecipients, message, {}, {}, false, transfer, canonical);
        require(&t == &c.transaction(), "deliver() returned another transaction");
    });
    a.to = log.size();
    a.txn = c.transaction();
    out.push_back(std::move(a));
}

// mail, rcpt x3, then the message by BDAT (two chunks) when offered, else DATA.
void run_steps(lmtp::Client& c, const std::string& log, std::vector<Attempt>& out, std::string_view message) {
    Attempt a;
    a.from = log.size();
    a.rcpts = kRecipients.size();
    const bool bdat = c.supports("CHUNKING");
    std::string chunks = fuzz::canonical(message);
    a.body = bdat ? chunks : std::string(message);
    a.body_as_is = bdat;
    a.returned = attempt(c, [&] {
        if (!c.mail(kSender).completion()) return;
        for (const auto& r : kRecipients) c.rcpt(r);
        if (bdat) {
            std::size_t half = chunks.size() / 2;  // an empty message goes as BDAT 0 LAST alone
            if (half && !c.bdat(std::string_view(chunks).substr(0, half), false).completion()) return;
            c.bdat(std::string_view(chunks).substr(half), true);
        } else {
            c.data(message);
        }
    });
    a.to = log.size();
    a.txn = c.transaction();
    out.push_back(std::move(a));
}

// --- reading back what was written --------------------------------------------------

// The server's view of one transaction, from the log and the replies.
struct ModelTxn {
    std::size_t offset = 0;  // of its MAIL in the log
    Reply mail;
    std::vector<Reply> rcpt;            // one per RCPT written
    std::vector<std::string> addresses; // from the RCPT lines
    std::vector<std::size_t> accepted;  // RCPTs answered 2xx after MAIL was
    std::vector<std::optional<Reply>> finals;
    std::optional<Reply> refusal;  // of DATA, or of the first refused BDAT chunk
    std::string body;              // decoded after DATA / the BDAT chunks joined
    bool body_done = false;        // the terminator or LAST was written
    bool bdat = false;
    bool bdat_failed = false;

    bool mail_ok() const { return mail.completion(); }
    // What the server said about recipient i, if it said anything yet.
    std::optional<Reply> verdict(std::size_t i) const {
        if (mail.empty()) return std::nullopt;
        if (!mail_ok()) return mail;
        if (i >= rcpt.size() || rcpt[i].empty()) return std::nullopt;
        if (!rcpt[i].completion()) return rcpt[i];
        if (refusal) return refusal;
        return i < finals.size() ? finals[i] : std::nullopt;
    }
};

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

class Model {
public:
    Model(const std::string& log, std::vector<Reply> replies) : log_(log), replies_(std::move(replies)) {}

    std::vector<ModelTxn> walk() {
        while (pos_ < log_.size()) {
            if (!command()) break;
        }
        return std::move(txns_);
    }

private:
    // The reply to the next command; empty when the server sent no more.
    Reply next() {
        std::size_t i = r_++;
        return i < replies_.size() ? replies_[i] : Reply{};
    }

    ModelTxn& txn() {
        require(!txns_.empty(), "RCPT, DATA or BDAT before any MAIL");
        return txns_.back();
    }

    // One final reply per accepted recipient, in order (RFC 2033); or, from a server that answers a
    // line per recipient (session.hpp), the first reply has exactly one line for each of two or
    // more, and either its lines carry different codes or the banner named Net::Server::Mail.
    void finals(ModelTxn& t) {
        t.finals.resize(t.rcpt.size());
        const std::size_t n = t.accepted.size();
        for (std::size_t k = 0; k < n; ++k) {
            Reply r = next();
            if (k == 0 && n >= 2 && r.lines.size() == n && (r.mixed() || line_server()) && no_3xx_line(r)) {
                for (std::size_t j = 0; j < n; ++j) t.finals[t.accepted[j]] = r.line_reply(j);
                return;
            }
            t.finals[t.accepted[k]] = std::move(r);
        }
    }

    static bool no_3xx_line(const Reply& r) {
        for (std::size_t i = 0; i < r.lines.size(); ++i)
            if (r.line_code(i) / 100 == 3) return false;
        return true;
    }

    bool line_server() const {
        if (replies_.empty()) return false;
        for (const auto& line : replies_[0].lines)
            if (line.find("Net::Server::Mail") != std::string::npos) return true;
        return false;
    }

    // Returns false at a message cut short (the last thing written).
    bool command() {
        std::size_t eol = log_.find("\r\n", pos_);
        require(eol != std::string::npos, "the client wrote a command line without CRLF");
        const std::size_t start = pos_;
        std::string_view line(log_.data() + pos_, eol - pos_);
        require(line.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos,
                "a command line holds a CR, LF or NUL");
        require(line.size() + 2 <= lmtp::kDefaultMaxCommandLine, "a command line is too long");
        pos_ = eol + 2;
        const bool sync = sync_next_;
        sync_next_ = false;

        if (starts_with(line, "LHLO ")) {
            next();
        } else if (starts_with(line, "MAIL FROM:<")) {
            txns_.emplace_back();
            txns_.back().offset = start;
            txns_.back().mail = next();
        } else if (starts_with(line, "RCPT TO:<") && line.back() == '>') {
            ModelTxn& t = txn();
            t.addresses.emplace_back(line.substr(9, line.size() - 10));
            Reply rep = next();
            if (t.mail_ok() && rep.completion()) t.accepted.push_back(t.rcpt.size());
            t.rcpt.push_back(std::move(rep));
        } else if (line == "DATA") {
            ModelTxn& t = txn();
            Reply rep = next();
            if (rep.code == 354) return message(t);
            if (!rep.empty()) t.refusal = rep;
        } else if (starts_with(line, "BDAT ")) {
            return chunk(txn(), line.substr(5));
        } else if (line == "NOOP") {
            // After BDAT LAST with nobody accepted: a refusal first answers BDAT LAST.
            Reply rep = next();
            if (sync && !rep.empty() && !rep.completion()) next();
        } else if (line == "RSET" || line == "QUIT") {
            next();
        } else {
            require(false, "the client wrote a line that is no command of the script");
        }
        return true;
    }

    bool message(ModelTxn& t) {
        lmtp::BodyDecoder dec;
        std::string body;
        pos_ += dec.decode(std::string_view(log_).substr(pos_), body);
        t.body = std::move(body);
        if (!dec.done()) {
            require(pos_ == log_.size(), "the message has no end but more follows");
            return false;
        }
        t.body_done = true;
        finals(t);
        return true;
    }

    bool chunk(ModelTxn& t, std::string_view args) {
        const bool last = args.size() > 5 && args.substr(args.size() - 5) == " LAST";
        if (last) args.remove_suffix(5);
        require(!args.empty() && args.size() <= 20 && args.find_first_not_of("0123456789") == std::string_view::npos &&
                    (args.size() == 1 || args[0] != '0'),
                "a BDAT line is not BDAT <size> [LAST]");
        std::uint64_t size = 0;
        for (char c : args) size = size * 10 + static_cast<std::uint64_t>(c - '0');
        require(size <= log_.size() - pos_, "fewer bytes follow BDAT than it announced");
        require(size > 0 || last, "an empty BDAT chunk that is not the last");
        t.bdat = true;
        t.body.append(log_, pos_, static_cast<std::size_t>(size));
        pos_ += static_cast<std::size_t>(size);
        if (!last) {
            Reply rep = next();
            if (!rep.completion() && !t.bdat_failed) {
                t.bdat_failed = true;
                if (!rep.empty()) t.refusal = rep;
            }
            return true;
        }
        require(!t.bdat_failed, "BDAT LAST after a refused chunk");
        t.body_done = true;
        if (t.accepted.empty())
            sync_next_ = true;
        else
            finals(t);
        return true;
    }

    const std::string& log_;
    std::vector<Reply> replies_;
    std::size_t pos_ = 0;
    std::size_t r_ = 1;  // replies_[0] is the banner
    bool sync_next_ = false;
    std::vector<ModelTxn> txns_;
};

void compare(const Attempt& a, const std::vector<ModelTxn>& model) {
    const ModelTxn* m = nullptr;
    for (const auto& t : model) {
        if (t.offset < a.from || t.offset >= a.to) continue;
        require(m == nullptr, "one call wrote two transactions");
        m = &t;
    }
    // A call refused before it sent MAIL leaves the previous results in place.
    if (!m && !a.returned) return;
    const lmtp::Transaction& t = a.txn;
    const auto& rs = t.recipients;
    require(rs.size() <= a.rcpts, "more results than recipients");
    for (std::size_t i = 0; i < rs.size(); ++i)
        require(rs[i].address == kRecipients[i], "the results are not the recipients in order");
    if (a.returned && a.whole) require(rs.size() == a.rcpts && t.finished, "deliver() returned without every result");

    for (std::size_t k = 0; k < t.accepted.size(); ++k) {
        std::size_t i = t.accepted[k];
        require(i < rs.size() && (k == 0 || t.accepted[k - 1] < i), "accepted indexes out of order or range");
        require(rs[i].rcpt_reply.completion(), "a recipient counted as accepted without a 2xx to its RCPT");
    }
    require(t.finals <= t.accepted.size(), "more final replies than accepted recipients");

    for (std::size_t i = 0; i < rs.size(); ++i) {
        const lmtp::RecipientResult& r = rs[i];
        switch (r.outcome) {
            case Outcome::pending:
            case Outcome::unknown:
                require(!(a.returned && a.whole), "deliver() returned with a recipient without a verdict");
                require(r.reply.empty(), "a reply for a recipient without a verdict");
                break;
            case Outcome::ok: require(r.reply.completion(), "delivered without a 2xx"); break;
            case Outcome::tempfail: require(r.reply.transient(), "temporary without a 4xx"); break;
            case Outcome::permfail: require(r.reply.permanent(), "permanent without a 5xx"); break;
        }
        if (r.outcome != Outcome::pending && r.outcome != Outcome::unknown) {
            require(m != nullptr, "a verdict without a MAIL sent");
            std::optional<Reply> v = m->verdict(i);
            require(v && fuzz::same_reply(*v, r.reply), "a verdict that is not the server's reply at its place");
        }
        if (!r.rcpt_reply.empty()) {
            require(m && i < m->rcpt.size() && fuzz::same_reply(m->rcpt[i], r.rcpt_reply),
                    "a RCPT reply that is not the server's reply to that RCPT");
            require(m->addresses[i] == r.address, "a RCPT sent for another address");
        }
    }
    if (m && !t.mail_reply.empty()) require(fuzz::same_reply(m->mail, t.mail_reply), "the wrong reply to MAIL");
    if (m && m->body_done && !m->accepted.empty())
        require(m->body == (a.body_as_is ? a.body : fuzz::canonical(a.body)),
                "the message on the wire is not the message given");
}

// Messages: line ends of every kind, lines starting with dots, no final line end.
constexpr std::string_view kMessageA =
    "From: <sender@example.org>\r\nSubject: fuzz\r\n\r\n.a line with a dot\r\n..two dots\nbare LF\n.\nbare CR\r.\rend";
constexpr std::string_view kMessageB = "Subject: short\r\n\r\nHello.\r\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < kHeader) return 0;
    const Options o = read_options(data);
    const std::string_view server(reinterpret_cast<const char*>(data + kHeader), size - kHeader);

    std::string log;
    lmtp::ClientOptions co;
    co.hello = "client.example.org";
    co.timeout = std::chrono::milliseconds(1000);
    co.send_hello = !o.manual_hello;
    co.limits.reply.accept_bare_lf = o.bare_lf;
    co.write_chunk = 16;
    if (o.bdat_chunk) co.bdat_chunk = o.bdat_chunk;
    co.bdat_window = o.bdat_window;
    static const bool show = std::getenv("LMTP_FUZZ_TRACE") != nullptr;  // to read what an input does
    co.trace = [](lmtp::TraceDir dir, std::string_view text) {
        if (dir == lmtp::TraceDir::send || dir == lmtp::TraceDir::receive)
            require(text.find_first_of("\r\n") == std::string_view::npos, "a traced line holds a CR or LF");
        if (show) std::fprintf(stderr, "%s %s\n", dir == lmtp::TraceDir::send ? ">>>" : dir == lmtp::TraceDir::receive ? "<<<" : "---", lmtp::printable(text, 200).c_str());
    };
    const std::string_view first = o.other_messages ? kMessageB : kMessageA;
    const std::string_view second = o.other_messages ? std::string_view{} : kMessageB;

    std::vector<Attempt> attempts;
    {
        lmtp::Client client(co);
        attempt(client, [&] { client.connect(std::make_unique<FuzzTransport>(server, o, log)); });
        if (o.manual_hello && client.connected()) attempt(client, [&] { client.hello("client.example.org"); });
        run_deliver(client, log, attempts, first, o.first_automatic ? lmtp::Transfer::automatic : lmtp::Transfer::data,
                    false);
        const bool chunking = client.supports("CHUNKING");
        if (o.second_by_steps)
            run_steps(client, log, attempts, second);
        else
            run_deliver(client, log, attempts, second, chunking ? lmtp::Transfer::bdat : lmtp::Transfer::automatic,
                        o.canonical);
        attempt(client, [&] { client.quit(); });
        require(!client.connected(), "still connected after QUIT");
        probe(client);
    }

    lmtp::ReplyLimits limits = co.limits.reply;
    std::string stream(server);  // what the client read, turns joined
    stream.erase(std::remove(stream.begin(), stream.end(), '\0'), stream.end());
    Model model(log, fuzz::parse_replies(stream, limits));
    const std::vector<ModelTxn> txns = model.walk();
    for (const Attempt& a : attempts) compare(a, txns);
    return 0;
}
