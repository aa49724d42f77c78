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
    "(CONNECTIONS n, MESSAGES n, FLUSHES n, LOCKSTEP_VIOLATIONS n) and exit 0.\n"
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
    "  --reply-delay MS        wait before each flush of replies\n"
    "  --byte-delay MS         write replies byte by byte, MS between bytes\n"
    "  --record-limit N        keep at most N bytes of transcript and of each message\n"
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
    OPT_MESSAGES_DIR, OPT_EXIT_ON_EOF, OPT_HELP
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
    {"reply-delay", required_argument, nullptr, OPT_REPLY_DELAY},
    {"byte-delay", required_argument, nullptr, OPT_BYTE_DELAY},
    {"record-limit", required_argument, nullptr, OPT_RECORD_LIMIT},
    {"transcript", required_argument, nullptr, OPT_TRANSCRIPT},
    {"sent", required_argument, nullptr, OPT_SENT},
    {"messages-dir", required_argument, nullptr, OPT_MESSAGES_DIR},
    {"exit-on-eof", no_argument, nullptr, OPT_EXIT_ON_EOF},
    {"help", no_argument, nullptr, OPT_HELP},
    {nullptr, 0, nullptr, 0},
};

}  // namespace

int main(int argc, char **argv) {
    fake::Options o;
    std::string transcript_path, sent_path, messages_dir;
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
        case OPT_REPLY_DELAY: o.reply_delay_ms = static_cast<int>(num("--reply-delay", 0, 3600000)); break;
        case OPT_BYTE_DELAY: o.byte_delay_ms = static_cast<int>(num("--byte-delay", 0, 3600000)); break;
        case OPT_RECORD_LIMIT: o.record_limit = static_cast<std::size_t>(num("--record-limit", 0, 1LL << 50)); break;
        case OPT_TRANSCRIPT: transcript_path = optarg; break;
        case OPT_SENT: sent_path = optarg; break;
        case OPT_MESSAGES_DIR: messages_dir = optarg; break;
        case OPT_EXIT_ON_EOF: exit_on_eof = true; break;
        case OPT_HELP: std::fputs(kUsage, stdout); return 0;
        default: std::fputs(kUsage, stderr); return 2;
        }
    }
    if (optind != argc) bad("argument", argv[optind]);

    int transcript_fd = -1, sent_fd = -1;
    if (!transcript_path.empty() && (transcript_fd = open_log(transcript_path.c_str())) < 0) return 1;
    if (!sent_path.empty() && (sent_fd = open_log(sent_path.c_str())) < 0) return 1;
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
    std::fflush(stdout);
    server.reset();
    if (transcript_fd >= 0) ::close(transcript_fd);
    if (sent_fd >= 0) ::close(sent_fd);
    ::close(sfd);
    return 0;
}
