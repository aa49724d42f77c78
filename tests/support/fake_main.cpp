// fake_main.cpp - fake-lmtp: the fake LMTP server as a program, for the Perl and Python tests.
//
// Prints "PORT <n>" (TCP) or "UNIX <path>" on stdout once listening, serves until SIGTERM/SIGINT
// (or stdin EOF with --exit-on-eof), then prints counters and exits 0. See --help.
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fake_server.hpp"

namespace {

const char kUsage[] =
    "usage: fake-lmtp [options]\n"
    "Listen on 127.0.0.1 (or ::1, or a unix socket), print \"PORT <n>\" or \"UNIX <path>\" on stdout,\n"
    "serve LMTP until SIGTERM/SIGINT (or stdin EOF with --exit-on-eof), then print the counters\n"
    "(CONNECTIONS n, MESSAGES n, FLUSHES n, LOCKSTEP_VIOLATIONS n, TLS_SESSIONS n, TLS_FAILURES n,\n"
    "AUTH_SUCCESSES n, AUTH_FAILURES n) and exit 0.\n"
    "Behaviour, rules and faults are those of tests/support/fake_lmtp.h.\n"
    "Strings marked ESC understand \\r \\n \\t \\\\ \\xHH.\n"
    "\n"
    "  --inet6                 listen on [::1]\n"
    "  --unix PATH             listen on a unix socket at PATH (\"\" = a fresh path in $TMPDIR)\n"
    "  --port N                TCP port (default 0: any free port)\n"
    "  --rcvbuf N              SO_RCVBUF of the connections\n"
    "  --hostname NAME         name in the greeting and LHLO reply (default fake.example)\n"
    "  --greeting ESC          raw greeting bytes (default \"220 fake.example LMTP ready\\r\\n\")\n"
    "  --no-pipelining         do not advertise PIPELINING (and count lockstep violations)\n"
    "  --no-enhanced           no ENHANCEDSTATUSCODES, no x.y.z in replies\n"
    "  --no-8bitmime           do not advertise 8BITMIME\n"
    "  --size N                advertise and enforce SIZE N\n"
    "  --cap CAP               one more capability line (repeatable), e.g. --cap DSN --cap CHUNKING\n"
    "  --rules RULES           per-recipient replies: \"a@x=250,250;b@x=250,552;c@x=550\"\n"
    "  --fault-on PREFIX       command prefix that triggers the fault; \"\" = at connect,\n"
    "                          \".\" = at end of message\n"
    "  --fault-reply ESC       raw bytes sent when the fault fires\n"
    "  --fault-fill ESC        raw bytes repeated --fault-repeat times after --fault-reply\n"
    "  --fault-repeat N        repetitions of --fault-fill, -1 = forever\n"
    "  --fault-tail ESC        raw bytes sent last\n"
    "  --fault-action A        continue | close | hang | reset | stop-reading (default continue)\n"
    "  --fault-keep            run the command normally, send the fault bytes after its reply\n"
    "  --fault-skip N          let the first N matches through\n"
    "  --fault-times N         fire at most N times (default 0 = always)\n"
    "  --fault-body-bytes N    with --fault-on .: fire once N bytes of the message were read\n"
    "  --fault-replies N       with --fault-on .: send the first N final replies, then the fault\n"
    "  --reply-delay MS        wait before each flush of replies\n"
    "  --byte-delay MS         write replies byte by byte, MS between bytes\n"
    "  --record-limit N        keep at most N bytes of transcript and of each message\n"
    "  --bdat-fail-chunk N     reject the Nth BDAT chunk of each transaction with 552\n"
    "TLS (STARTTLS unless --tls-implicit):\n"
    "  --tls-cert FILE         PEM certificate (chain): advertise and accept STARTTLS\n"
    "  --tls-key FILE          PEM private key (default: in --tls-cert)\n"
    "  --make-test-certs DIR   write the test certificates (see make-test-certs) into DIR first;\n"
    "                          then --tls-cert/--tls-key default to DIR/server.pem, DIR/server.key\n"
    "                          and --tls-client-ca to DIR/ca.pem\n"
    "  --tls-implicit          TLS from the first byte (the greeting inside TLS)\n"
    "  --tls-require           530 5.7.0 for MAIL (and most commands) before STARTTLS\n"
    "  --tls-verify-client M   request | require a client certificate (verified against\n"
    "                          --tls-client-ca)\n"
    "  --tls-client-ca FILE    PEM CA file for client certificates\n"
    "  --tls-max-version V     1.2 | 1.3 (the minimum is always 1.2)\n"
    "  --tls-fail-handshake M  garbage | close: after \"220 ready\", answer the ClientHello with\n"
    "                          garbage, or just close, instead of a handshake\n"
    "  --tls-plain-after-220 ESC  extra plaintext right after \"220 ready\" in the same write\n"
    "AUTH:\n"
    "  --auth MECHS            advertise and accept AUTH, e.g. \"PLAIN LOGIN SCRAM-SHA-256 EXTERNAL\"\n"
    "  --auth-after-tls        only inside TLS (538 before)\n"
    "  --auth-require          530 5.7.0 for MAIL before a successful AUTH\n"
    "  --auth-user USER        the one valid account ...\n"
    "  --auth-password PASS    ... and its password\n"
    "  --auth-fail-code N      answer every AUTH with N (e.g. 454, 534, 538)\n"
    "  --scram-salt B64        SCRAM-SHA-256 salt (default random)\n"
    "  --scram-iterations N    SCRAM iteration count (default 4096)\n"
    "  --scram-server-nonce S  fixed server nonce part (default random)\n"
    "  --scram-bad-server-signature  send a wrong v= in SCRAM\n"
    "  --events FILE           append one line per TLS handshake (\"TLS i offset=n version=...\n"
    "                          client_cert=none|verified|unverified [cn=...]\", \"TLS_FAILED why\"),\n"
    "                          AUTH outcome (\"AUTH_OK 235 MECH user\", \"AUTH_FAILED code MECH user\")\n"
    "                          and message (\"MESSAGE i tls=0|1 auth=MECH:user|-\")\n"
    "  --transcript FILE       append every byte the clients send to FILE, as it arrives\n"
    "  --sent FILE             append every byte the server writes to FILE\n"
    "  --messages-dir DIR      write each decoded message to DIR/<i>.eml (i from 0, atomically)\n"
    "  --exit-on-eof           also stop when stdin reaches EOF\n"
    "  --help                  this text\n";

// \r \n \t \\ \xHH
bool unescape(const char *in, std::string &out) {
    out.clear();
    for (const char *p = in; *p; ++p) {
        if (*p != '\\') {
            out += *p;
            continue;
        }
        ++p;
        switch (*p) {
        case 'r': out += '\r'; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case '\\': out += '\\'; break;
        case 'x': {
            int v = 0;
            for (int i = 0; i < 2; ++i) {
                char c = p[1];
                int d = c >= '0' && c <= '9' ? c - '0'
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                      : -1;
                if (d < 0) return false;
                v = v * 16 + d;
                ++p;
            }
            out += static_cast<char>(v);
            break;
        }
        default:
            return false;
        }
    }
    return true;
}

bool number(const char *s, long long &v) {
    char *end = nullptr;
    errno = 0;
    v = std::strtoll(s, &end, 10);
    return errno == 0 && end != s && *end == '\0';
}

void write_fd(int fd, const char *p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

int open_log(const char *path) {
    int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) std::fprintf(stderr, "fake-lmtp: %s: %s\n", path, std::strerror(errno));
    return fd;
}

enum {
    OPT_INET6 = 256, OPT_UNIX, OPT_PORT, OPT_RCVBUF, OPT_HOSTNAME, OPT_GREETING, OPT_NO_PIPELINING,
    OPT_NO_ENHANCED, OPT_NO_8BITMIME, OPT_SIZE, OPT_CAP, OPT_RULES, OPT_FAULT_ON, OPT_FAULT_REPLY,
    OPT_FAULT_FILL, OPT_FAULT_REPEAT, OPT_FAULT_TAIL, OPT_FAULT_ACTION, OPT_FAULT_KEEP, OPT_FAULT_SKIP,
    OPT_FAULT_TIMES, OPT_REPLY_DELAY, OPT_BYTE_DELAY, OPT_RECORD_LIMIT, OPT_TRANSCRIPT, OPT_SENT,
    OPT_MESSAGES_DIR, OPT_EXIT_ON_EOF, OPT_HELP, OPT_BDAT_FAIL_CHUNK, OPT_TLS_CERT, OPT_TLS_KEY,
    OPT_MAKE_TEST_CERTS, OPT_TLS_IMPLICIT, OPT_TLS_REQUIRE, OPT_TLS_VERIFY_CLIENT, OPT_TLS_CLIENT_CA,
    OPT_TLS_MAX_VERSION, OPT_TLS_FAIL_HANDSHAKE, OPT_TLS_PLAIN_AFTER_220, OPT_AUTH, OPT_AUTH_AFTER_TLS,
    OPT_AUTH_REQUIRE, OPT_AUTH_USER, OPT_AUTH_PASSWORD, OPT_AUTH_FAIL_CODE, OPT_SCRAM_SALT,
    OPT_SCRAM_ITERATIONS, OPT_SCRAM_SERVER_NONCE, OPT_SCRAM_BAD_SERVER_SIGNATURE, OPT_EVENTS,
    OPT_FAULT_BODY_BYTES, OPT_FAULT_REPLIES
};

const option kOptions[] = {
    {"inet6", no_argument, nullptr, OPT_INET6},
    {"unix", required_argument, nullptr, OPT_UNIX},
    {"port", required_argument, nullptr, OPT_PORT},
    {"rcvbuf", required_argument, nullptr, OPT_RCVBUF},
    {"hostname", required_argument, nullptr, OPT_HOSTNAME},
    {"greeting", required_argument, nullptr, OPT_GREETING},
    {"no-pipelining", no_argument, nullptr, OPT_NO_PIPELINING},
    {"no-enhanced", no_argument, nullptr, OPT_NO_ENHANCED},
    {"no-8bitmime", no_argument, nullptr, OPT_NO_8BITMIME},
    {"size", required_argument, nullptr, OPT_SIZE},
    {"cap", required_argument, nullptr, OPT_CAP},
    {"rules", required_argument, nullptr, OPT_RULES},
    {"fault-on", required_argument, nullptr, OPT_FAULT_ON},
    {"fault-reply", required_argument, nullptr, OPT_FAULT_REPLY},
    {"fault-fill", required_argument, nullptr, OPT_FAULT_FILL},
    {"fault-repeat", required_argument, nullptr, OPT_FAULT_REPEAT},
    {"fault-tail", required_argument, nullptr, OPT_FAULT_TAIL},
    {"fault-action", required_argument, nullptr, OPT_FAULT_ACTION},
    {"fault-keep", no_argument, nullptr, OPT_FAULT_KEEP},
    {"fault-skip", required_argument, nullptr, OPT_FAULT_SKIP},
    {"fault-times", required_argument, nullptr, OPT_FAULT_TIMES},
    {"fault-body-bytes", required_argument, nullptr, OPT_FAULT_BODY_BYTES},
    {"fault-replies", required_argument, nullptr, OPT_FAULT_REPLIES},
    {"reply-delay", required_argument, nullptr, OPT_REPLY_DELAY},
    {"byte-delay", required_argument, nullptr, OPT_BYTE_DELAY},
    {"record-limit", required_argument, nullptr, OPT_RECORD_LIMIT},
    {"transcript", required_argument, nullptr, OPT_TRANSCRIPT},
    {"sent", required_argument, nullptr, OPT_SENT},
    {"messages-dir", required_argument, nullptr, OPT_MESSAGES_DIR},
    {"exit-on-eof", no_argument, nullptr, OPT_EXIT_ON_EOF},
    {"help", no_argument, nullptr, OPT_HELP},
    {"bdat-fail-chunk", required_argument, nullptr, OPT_BDAT_FAIL_CHUNK},
    {"tls-cert", required_argument, nullptr, OPT_TLS_CERT},
    {"tls-key", required_argument, nullptr, OPT_TLS_KEY},
    {"make-test-certs", required_argument, nullptr, OPT_MAKE_TEST_CERTS},
    {"tls-implicit", no_argument, nullptr, OPT_TLS_IMPLICIT},
    {"tls-require", no_argument, nullptr, OPT_TLS_REQUIRE},
    {"tls-verify-client", required_argument, nullptr, OPT_TLS_VERIFY_CLIENT},
    {"tls-client-ca", required_argument, nullptr, OPT_TLS_CLIENT_CA},
    {"tls-max-version", required_argument, nullptr, OPT_TLS_MAX_VERSION},
    {"tls-fail-handshake", required_argument, nullptr, OPT_TLS_FAIL_HANDSHAKE},
    {"tls-plain-after-220", required_argument, nullptr, OPT_TLS_PLAIN_AFTER_220},
    {"auth", required_argument, nullptr, OPT_AUTH},
    {"auth-after-tls", no_argument, nullptr, OPT_AUTH_AFTER_TLS},
    {"auth-require", no_argument, nullptr, OPT_AUTH_REQUIRE},
    {"auth-user", required_argument, nullptr, OPT_AUTH_USER},
    {"auth-password", required_argument, nullptr, OPT_AUTH_PASSWORD},
    {"auth-fail-code", required_argument, nullptr, OPT_AUTH_FAIL_CODE},
    {"scram-salt", required_argument, nullptr, OPT_SCRAM_SALT},
    {"scram-iterations", required_argument, nullptr, OPT_SCRAM_ITERATIONS},
    {"scram-server-nonce", required_argument, nullptr, OPT_SCRAM_SERVER_NONCE},
    {"scram-bad-server-signature", no_argument, nullptr, OPT_SCRAM_BAD_SERVER_SIGNATURE},
    {"events", required_argument, nullptr, OPT_EVENTS},
    {nullptr, 0, nullptr, 0},
};

}  // namespace

int main(int argc, char **argv) {
    fake::Options o;
    std::string transcript_path, sent_path, messages_dir, certs_dir, events_path;
    bool exit_on_eof = false;

    auto bad = [](const char *what, const char *value) {
        std::fprintf(stderr, "fake-lmtp: bad %s: %s\n%s", what, value, kUsage);
        std::exit(2);
    };
    auto num = [&](const char *what, long long lo, long long hi) {
        long long v = 0;
        if (!number(optarg, v) || v < lo || v > hi) bad(what, optarg);
        return v;
    };
    auto esc = [&](const char *what) {
        std::string s;
        if (!unescape(optarg, s)) bad(what, optarg);
        return s;
    };

    int c;
    while ((c = getopt_long(argc, argv, "", kOptions, nullptr)) != -1) {
        switch (c) {
        case OPT_INET6: o.family = AF_INET6; break;
        case OPT_UNIX: o.family = AF_UNIX; o.unix_path = optarg; break;
        case OPT_PORT: o.port = static_cast<unsigned>(num("--port", 0, 65535)); break;
        case OPT_RCVBUF: o.rcvbuf = static_cast<int>(num("--rcvbuf", 0, 1 << 30)); break;
        case OPT_HOSTNAME: o.hostname = optarg; break;
        case OPT_GREETING: o.has_greeting = true; o.greeting = esc("--greeting"); break;
        case OPT_NO_PIPELINING: o.pipelining = false; break;
        case OPT_NO_ENHANCED: o.enhanced = false; break;
        case OPT_NO_8BITMIME: o.eightbitmime = false; break;
        case OPT_SIZE: o.size = static_cast<unsigned long>(num("--size", 0, 1LL << 60)); break;
        case OPT_CAP: o.extra_caps.push_back(optarg); break;
        case OPT_RULES: o.rules = optarg; break;
        case OPT_FAULT_ON: o.fault = true; o.fault_on = esc("--fault-on"); break;
        case OPT_FAULT_REPLY: o.fault_reply = esc("--fault-reply"); break;
        case OPT_FAULT_FILL: o.fault_fill = esc("--fault-fill"); break;
        case OPT_FAULT_REPEAT: o.fault_repeat = static_cast<long>(num("--fault-repeat", -1, 1LL << 40)); break;
        case OPT_FAULT_TAIL: o.fault_tail = esc("--fault-tail"); break;
        case OPT_FAULT_ACTION: {
            std::string a = optarg;
            if (a == "continue") o.fault_action = fake::Action::Continue;
            else if (a == "close") o.fault_action = fake::Action::Close;
            else if (a == "hang") o.fault_action = fake::Action::Hang;
            else if (a == "reset") o.fault_action = fake::Action::Reset;
            else if (a == "stop-reading") o.fault_action = fake::Action::StopReading;
            else bad("--fault-action", optarg);
            break;
        }
        case OPT_FAULT_KEEP: o.fault_keep = true; break;
        case OPT_FAULT_SKIP: o.fault_skip = static_cast<unsigned long>(num("--fault-skip", 0, 1LL << 40)); break;
        case OPT_FAULT_TIMES: o.fault_times = static_cast<unsigned long>(num("--fault-times", 0, 1LL << 40)); break;
        case OPT_FAULT_BODY_BYTES:
            o.fault_body_bytes = static_cast<unsigned long>(num("--fault-body-bytes", 0, 1LL << 40));
            break;
        case OPT_FAULT_REPLIES: o.fault_replies = static_cast<long>(num("--fault-replies", 0, 1LL << 20)); break;
        case OPT_REPLY_DELAY: o.reply_delay_ms = static_cast<int>(num("--reply-delay", 0, 3600000)); break;
        case OPT_BYTE_DELAY: o.byte_delay_ms = static_cast<int>(num("--byte-delay", 0, 3600000)); break;
        case OPT_RECORD_LIMIT: o.record_limit = static_cast<std::size_t>(num("--record-limit", 0, 1LL << 50)); break;
        case OPT_TRANSCRIPT: transcript_path = optarg; break;
        case OPT_SENT: sent_path = optarg; break;
        case OPT_MESSAGES_DIR: messages_dir = optarg; break;
        case OPT_EXIT_ON_EOF: exit_on_eof = true; break;
        case OPT_HELP: std::fputs(kUsage, stdout); return 0;
        case OPT_BDAT_FAIL_CHUNK:
            o.bdat_fail_chunk = static_cast<unsigned long>(num("--bdat-fail-chunk", 0, 1LL << 40));
            break;
        case OPT_TLS_CERT: o.tls_cert = optarg; break;
        case OPT_TLS_KEY: o.tls_key = optarg; break;
        case OPT_MAKE_TEST_CERTS: certs_dir = optarg; break;
        case OPT_TLS_IMPLICIT: o.tls_implicit = true; break;
        case OPT_TLS_REQUIRE: o.tls_require = true; break;
        case OPT_TLS_VERIFY_CLIENT: {
            std::string m = optarg;
            if (m == "request") o.tls_verify_client = 1;
            else if (m == "require") o.tls_verify_client = 2;
            else bad("--tls-verify-client", optarg);
            break;
        }
        case OPT_TLS_CLIENT_CA: o.tls_client_ca = optarg; break;
        case OPT_TLS_MAX_VERSION: {
            std::string v = optarg;
            if (v == "1.2") o.tls_max_version = 12;
            else if (v == "1.3") o.tls_max_version = 13;
            else bad("--tls-max-version", optarg);
            break;
        }
        case OPT_TLS_FAIL_HANDSHAKE: {
            std::string m = optarg;
            if (m == "garbage") o.tls_fail_handshake = 1;
            else if (m == "close") o.tls_fail_handshake = 2;
            else bad("--tls-fail-handshake", optarg);
            break;
        }
        case OPT_TLS_PLAIN_AFTER_220: o.tls_plain_after_220 = esc("--tls-plain-after-220"); break;
        case OPT_AUTH: o.auth_mechanisms = fake::parse_mechanisms(optarg); break;
        case OPT_AUTH_AFTER_TLS: o.auth_after_tls = true; break;
        case OPT_AUTH_REQUIRE: o.auth_require = true; break;
        case OPT_AUTH_USER: o.has_auth_account = true; o.auth_user = optarg; break;
        case OPT_AUTH_PASSWORD: o.auth_password = optarg; break;
        case OPT_AUTH_FAIL_CODE: o.auth_fail_code = static_cast<int>(num("--auth-fail-code", 400, 599)); break;
        case OPT_SCRAM_SALT:
            if (!fake::base64_decode(optarg, o.scram_salt) || o.scram_salt.empty()) bad("--scram-salt", optarg);
            break;
        case OPT_SCRAM_ITERATIONS:
            o.scram_iterations = static_cast<unsigned>(num("--scram-iterations", 1, 100000000));
            break;
        case OPT_SCRAM_SERVER_NONCE: o.scram_server_nonce = optarg; break;
        case OPT_SCRAM_BAD_SERVER_SIGNATURE: o.scram_bad_server_signature = true; break;
        case OPT_EVENTS: events_path = optarg; break;
        default: std::fputs(kUsage, stderr); return 2;
        }
    }
    if (optind != argc) bad("argument", argv[optind]);

    if (!certs_dir.empty()) {
        std::string err;
        if (!fake::make_test_certs(certs_dir, err)) {
            std::fprintf(stderr, "fake-lmtp: --make-test-certs: %s\n", err.c_str());
            return 1;
        }
        if (o.tls_cert.empty()) {
            o.tls_cert = certs_dir + "/server.pem";
            if (o.tls_key.empty()) o.tls_key = certs_dir + "/server.key";
        }
        if (o.tls_client_ca.empty() && o.tls_verify_client) o.tls_client_ca = certs_dir + "/ca.pem";
    }

    int transcript_fd = -1, sent_fd = -1, events_fd = -1;
    if (!transcript_path.empty() && (transcript_fd = open_log(transcript_path.c_str())) < 0) return 1;
    if (!sent_path.empty() && (sent_fd = open_log(sent_path.c_str())) < 0) return 1;
    if (!events_path.empty() && (events_fd = open_log(events_path.c_str())) < 0) return 1;
    if (events_fd >= 0)
        o.on_event = [events_fd](const std::string &line) {
            std::string l = line + "\n";
            write_fd(events_fd, l.data(), l.size());
        };
    if (transcript_fd >= 0)
        o.on_client_bytes = [transcript_fd](const char *p, std::size_t n) { write_fd(transcript_fd, p, n); };
    if (sent_fd >= 0)
        o.on_server_bytes = [sent_fd](const char *p, std::size_t n) { write_fd(sent_fd, p, n); };
    if (!messages_dir.empty()) {
        o.on_message = [messages_dir](std::size_t i, const std::string &m) {
            std::string final_path = messages_dir + "/" + std::to_string(i) + ".eml";
            std::string tmp = final_path + ".tmp";
            int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0) return;
            write_fd(fd, m.data(), m.size());
            ::close(fd);
            ::rename(tmp.c_str(), final_path.c_str());
        };
    }

    // Block the signals we wait for (and SIGPIPE, for stdout) before any thread exists, so that
    // every thread inherits the mask and only the signalfd sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigset_t with_pipe = set;
    sigaddset(&with_pipe, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &with_pipe, nullptr) != 0) {
        std::perror("fake-lmtp: sigprocmask");
        return 1;
    }
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        std::perror("fake-lmtp: signalfd");
        return 1;
    }

    std::string err;
    std::unique_ptr<fake::Server> server = fake::Server::start(o, err);
    if (!server) {
        std::fprintf(stderr, "fake-lmtp: %s\n", err.c_str());
        return 1;
    }
    if (o.family == AF_UNIX)
        std::printf("UNIX %s\n", server->host().c_str());
    else
        std::printf("PORT %u\n", server->port());
    std::fflush(stdout);

    for (;;) {
        pollfd p[2];
        p[0].fd = sfd;
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = exit_on_eof ? 0 : -1;
        p[1].events = POLLIN;
        p[1].revents = 0;
        int r = ::poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (p[0].revents) break;
        if (p[1].revents) {
            char buf[4096];
            ssize_t n = ::read(0, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
        }
    }

    server->stop();
    fake::Record &rec = server->record();
    std::printf("CONNECTIONS %zu\nMESSAGES %zu\nFLUSHES %zu\nLOCKSTEP_VIOLATIONS %d\n", rec.connections,
                rec.messages.size(), rec.flushes, rec.violations);
    std::printf("TLS_SESSIONS %zu\nTLS_FAILURES %zu\nAUTH_SUCCESSES %zu\nAUTH_FAILURES %zu\n", rec.tls.size(),
                rec.tls_failures, rec.auth_successes, rec.auth_failures);
    std::fflush(stdout);
    server.reset();
    if (transcript_fd >= 0) ::close(transcript_fd);
    if (sent_fd >= 0) ::close(sent_fd);
    if (events_fd >= 0) ::close(events_fd);
    ::close(sfd);
    return 0;
}
