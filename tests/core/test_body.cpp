// Tests for the body encoder and decoder (lmtp/body.hpp): line-end
// normalisation, dot-stuffing (RFC 5321 4.5.2), the terminator, and that a
// chunk may end anywhere.
#include "lmtp/body.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "body_scan.hpp"

namespace {

using lmtp::BodyDecoder;
using lmtp::BodyEncoder;
using Mode = lmtp::BodyEncoder::Mode;
using namespace std::string_literals;

std::string show(std::string_view s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '\r') o += "\\r";
        else if (c == '\n') o += "\\n";
        else if (c < 0x20 || c >= 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            o += buf;
        } else o += static_cast<char>(c);
    }
    return "\"" + o + "\"";
}

// The encoder's reference (lmtp/body.hpp), whole-message: every CRLF, bare
// CR and bare LF becomes CRLF, and a message that does not end in a line end
// gets one; for DATA, dots doubled at the start of lines, then ".\r\n".
std::string normalise(std::string_view in) {
    return lmtp::encode_reference(in, Mode::canonical);
}
std::string reference_wire(std::string_view in) {
    return lmtp::encode_reference(in, Mode::dot_stuff);
}

std::string encode_pieces(const std::vector<std::string_view>& pieces, Mode mode) {
    BodyEncoder e(mode);
    std::string out;
    for (std::string_view p : pieces) e.encode(p, out);
    e.finish(out);
    return out;
}

std::string encode_once(std::string_view in, Mode mode = Mode::dot_stuff) {
    return encode_pieces({in}, mode);
}

std::string encode_bytewise(std::string_view in, Mode mode) {
    std::vector<std::string_view> pieces;
    for (std::size_t i = 0; i < in.size(); ++i) pieces.push_back(in.substr(i, 1));
    return encode_pieces(pieces, mode);
}

std::vector<std::string_view> random_pieces(std::string_view in, std::mt19937& rng,
                                            std::size_t max_piece) {
    std::vector<std::string_view> pieces;
    std::size_t off = 0;
    while (off < in.size()) {
        std::size_t n = rng() % (max_piece + 1);  // empty pieces too
        n = std::min(n, in.size() - off);
        pieces.push_back(in.substr(off, n));
        off += n;
    }
    return pieces;
}

struct Case {
    std::string in;
    std::string dot_stuff;  // DATA wire form, terminator included
    std::string canonical;  // BDAT form
};

std::vector<Case> cases() {
    return {
        {"", ".\r\n", ""},
        {"a", "a\r\n.\r\n", "a\r\n"},
        {"a\n", "a\r\n.\r\n", "a\r\n"},
        {"a\r\n", "a\r\n.\r\n", "a\r\n"},
        {"a\r", "a\r\n.\r\n", "a\r\n"},
        {"a\rb", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
        {"a\nb", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
        {".a\n", "..a\r\n.\r\n", ".a\r\n"},
        {"a\n.\n", "a\r\n..\r\n.\r\n", "a\r\n.\r\n"},
        {".", "..\r\n.\r\n", ".\r\n"},
        {".\n", "..\r\n.\r\n", ".\r\n"},
        {".\r\n", "..\r\n.\r\n", ".\r\n"},
        {".\r", "..\r\n.\r\n", ".\r\n"},
        {"..\n", "...\r\n.\r\n", "..\r\n"},
        {"\n", "\r\n.\r\n", "\r\n"},
        {"\r\n", "\r\n.\r\n", "\r\n"},
        {"\r", "\r\n.\r\n", "\r\n"},
        {"\n\n", "\r\n\r\n.\r\n", "\r\n\r\n"},
        {"\r\r", "\r\n\r\n.\r\n", "\r\n\r\n"},
        {"\n\r", "\r\n\r\n.\r\n", "\r\n\r\n"},
        {"\r\n\r\n", "\r\n\r\n.\r\n", "\r\n\r\n"},
        {"\r\r\n", "\r\n\r\n.\r\n", "\r\n\r\n"},
        {"a\r\r\n", "a\r\n\r\n.\r\n", "a\r\n\r\n"},
        {"a\r\n\n", "a\r\n\r\n.\r\n", "a\r\n\r\n"},
        {"a.b\n", "a.b\r\n.\r\n", "a.b\r\n"},
        {" .a\n", " .a\r\n.\r\n", " .a\r\n"},
        {"a\n.\n.\n", "a\r\n..\r\n..\r\n.\r\n", "a\r\n.\r\n.\r\n"},
        {"a\r.\r", "a\r\n..\r\n.\r\n", "a\r\n.\r\n"},
        {"a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"},
        {"\r\n.\r\n", "\r\n..\r\n.\r\n", "\r\n.\r\n"},
        {"\n.\r\n", "\r\n..\r\n.\r\n", "\r\n.\r\n"},
        {"a\n\n.b", "a\r\n\r\n..b\r\n.\r\n", "a\r\n\r\n.b\r\n"},
        {".\n.\n.", "..\r\n..\r\n..\r\n.\r\n", ".\r\n.\r\n.\r\n"},
        {"x\0y\n"s, "x\0y\r\n.\r\n"s, "x\0y\r\n"s},
        {"caf\xC3\xA9\n", "caf\xC3\xA9\r\n.\r\n", "caf\xC3\xA9\r\n"},
        {"Subject: hi\n\nbody\n.\n", "Subject: hi\r\n\r\nbody\r\n..\r\n.\r\n",
         "Subject: hi\r\n\r\nbody\r\n.\r\n"},
    };
}

// Readable names in gtest's failure output instead of a byte dump.
void PrintTo(const Case& c, std::ostream* os) { *os << show(c.in); }

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
    return "case" + std::to_string(info.index);
}

class EncoderTable : public ::testing::TestWithParam<Case> {};

TEST_P(EncoderTable, ModelAgreesWithTable) {
    // Guards the reference model used by the random tests below.
    const Case& c = GetParam();
    EXPECT_EQ(show(reference_wire(c.in)), show(c.dot_stuff));
    EXPECT_EQ(show(normalise(c.in)), show(c.canonical));
}

TEST_P(EncoderTable, OneShot) {
    const Case& c = GetParam();
    SCOPED_TRACE(show(c.in));
    EXPECT_EQ(show(encode_once(c.in, Mode::dot_stuff)), show(c.dot_stuff));
    EXPECT_EQ(show(encode_once(c.in, Mode::canonical)), show(c.canonical));
}

TEST_P(EncoderTable, SplitInTwoAtEveryOffset) {
    const Case& c = GetParam();
    std::string_view in(c.in);
    for (std::size_t i = 0; i <= in.size(); ++i) {
        SCOPED_TRACE(show(c.in) + " split at " + std::to_string(i));
        std::vector<std::string_view> pieces = {in.substr(0, i), in.substr(i)};
        EXPECT_EQ(show(encode_pieces(pieces, Mode::dot_stuff)), show(c.dot_stuff));
        EXPECT_EQ(show(encode_pieces(pieces, Mode::canonical)), show(c.canonical));
    }
}

TEST_P(EncoderTable, SplitInThreeAtEveryPairOfOffsets) {
    const Case& c = GetParam();
    std::string_view in(c.in);
    for (std::size_t i = 0; i <= in.size(); ++i) {
        for (std::size_t j = i; j <= in.size(); ++j) {
            std::vector<std::string_view> pieces = {in.substr(0, i), in.substr(i, j - i),
                                                    in.substr(j)};
            ASSERT_EQ(show(encode_pieces(pieces, Mode::dot_stuff)), show(c.dot_stuff))
                << show(c.in) << " split at " << i << "," << j;
            ASSERT_EQ(show(encode_pieces(pieces, Mode::canonical)), show(c.canonical))
                << show(c.in) << " split at " << i << "," << j;
        }
    }
}

TEST_P(EncoderTable, ByteByByte) {
    const Case& c = GetParam();
    SCOPED_TRACE(show(c.in));
    EXPECT_EQ(show(encode_bytewise(c.in, Mode::dot_stuff)), show(c.dot_stuff));
    EXPECT_EQ(show(encode_bytewise(c.in, Mode::canonical)), show(c.canonical));
}

TEST_P(EncoderTable, DecoderInvertsDotStuffing) {
    const Case& c = GetParam();
    SCOPED_TRACE(show(c.in));
    BodyDecoder d;
    std::string out;
    EXPECT_EQ(d.decode(c.dot_stuff, out), c.dot_stuff.size());
    EXPECT_TRUE(d.done());
    EXPECT_EQ(show(out), show(c.canonical));
}

INSTANTIATE_TEST_SUITE_P(Table, EncoderTable, ::testing::ValuesIn(cases()), case_name);

// ---------------------------------------------------------------------------
// Encoder: random inputs and chunkings against the reference model.

std::string random_body(std::mt19937& rng, std::size_t max_len) {
    // Mostly the interesting bytes.
    static const std::string alphabet = "..\r\r\n\n\nab \0\xff"s;
    std::string s(rng() % (max_len + 1), 'x');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    return s;
}

TEST(Encoder, RandomChunksMatchOneShotAndModel) {
    std::mt19937 rng(5321);
    for (int n = 0; n < 2000; ++n) {
        const std::string in = random_body(rng, 64);
        const std::string want = reference_wire(in);
        const std::string want_canonical = normalise(in);
        ASSERT_EQ(show(encode_once(in, Mode::dot_stuff)), show(want)) << show(in);
        ASSERT_EQ(show(encode_once(in, Mode::canonical)), show(want_canonical)) << show(in);
        for (std::size_t max_piece : {1u, 2u, 3u, 7u}) {
            auto pieces = random_pieces(in, rng, max_piece);
            ASSERT_EQ(show(encode_pieces(pieces, Mode::dot_stuff)), show(want)) << show(in);
            ASSERT_EQ(show(encode_pieces(pieces, Mode::canonical)), show(want_canonical))
                << show(in);
        }
    }
}

// Long CRLF text where one change hides among the 64-octet blocks the encoder reads at once: a bare
// CR, a bare LF or a leading dot at every offset of a block, the last one in particular (a bare CR
// at offset 63 needs its LF though nothing else in its block changes).
TEST(Encoder, OneChangeInLongCrlfTextAtEveryOffset) {
    std::string text;
    while (text.size() < 400) text += "mail-like text line\r\n";
    for (const char* change : {"\r", "\n", ".", "\r\r", "\n."}) {
        for (std::size_t at = 60; at < 200; ++at) {
            std::string in = text;
            in.replace(at, std::strlen(change), change);
            const std::string want = reference_wire(in);
            ASSERT_EQ(show(encode_once(in, Mode::dot_stuff)), show(want)) << show(in) << " at " << at;
            ASSERT_EQ(show(encode_once(in, Mode::canonical)), show(normalise(in))) << show(in) << " at " << at;
        }
    }
}

TEST(Encoder, OutputBoundPerCall) {
    // "Output is at most about twice the input": never more than 2n + 2.
    std::mt19937 rng(1870);
    for (int n = 0; n < 500; ++n) {
        const std::string in = random_body(rng, 200);
        BodyEncoder e;
        std::string out;
        for (std::string_view p : random_pieces(in, rng, 17)) {
            const std::size_t before = out.size();
            e.encode(p, out);
            EXPECT_LE(out.size() - before, 2 * p.size() + 2) << show(p);
        }
    }
}

TEST(Encoder, AppendsToOutput) {
    BodyEncoder e;
    std::string out = "BDAT? no: prefix|";
    e.encode("a\n", out);
    e.finish(out);
    EXPECT_EQ(out, "BDAT? no: prefix|a\r\n.\r\n");
}

TEST(Encoder, EmptyChunksChangeNothing) {
    BodyEncoder e;
    std::string out;
    e.encode("", out);
    EXPECT_TRUE(out.empty());
    EXPECT_TRUE(e.at_line_start());
    e.encode("a\r", out);
    e.encode("", out);
    e.encode("\n.", out);
    e.encode("", out);
    e.finish(out);
    EXPECT_EQ(show(out), show("a\r\n..\r\n.\r\n"));
}

TEST(Encoder, ModeAccessors) {
    BodyEncoder d;
    EXPECT_EQ(d.mode(), Mode::dot_stuff);
    BodyEncoder c(Mode::canonical);
    EXPECT_EQ(c.mode(), Mode::canonical);
    c.set_mode(Mode::dot_stuff);
    EXPECT_EQ(c.mode(), Mode::dot_stuff);
    std::string out;
    c.encode(".x", out);
    c.finish(out);
    EXPECT_EQ(show(out), show("..x\r\n.\r\n"));
}

TEST(Encoder, CanonicalEmptyAndFinish) {
    BodyEncoder e(Mode::canonical);
    std::string out;
    e.finish(out);
    EXPECT_EQ(out, "");
    e.encode("x", out);
    e.finish(out);
    EXPECT_EQ(show(out), show("x\r\n"));
    out.clear();
    e.encode("x\r\n", out);
    e.finish(out);
    EXPECT_EQ(show(out), show("x\r\n"));
    out.clear();
    e.encode("x\r", out);  // ended in a CR: already a line end
    e.finish(out);
    EXPECT_EQ(show(out), show("x\r\n"));
}

TEST(Encoder, ResetAndReuse) {
    BodyEncoder e;
    std::string out;
    e.encode("abc", out);
    EXPECT_EQ(e.bytes_in(), 3u);
    EXPECT_FALSE(e.at_line_start());
    e.reset();
    EXPECT_EQ(e.bytes_in(), 0u);
    EXPECT_TRUE(e.at_line_start());
    out.clear();
    e.encode(".b\n", out);  // a new message: the dot starts a line
    e.finish(out);
    EXPECT_EQ(show(out), show("..b\r\n.\r\n"));

    // finish() also makes the encoder ready for the next message.
    out.clear();
    e.encode("first", out);  // ends mid-line
    e.finish(out);
    EXPECT_EQ(show(out), show("first\r\n.\r\n"));
    EXPECT_TRUE(e.at_line_start());
    out.clear();
    e.encode(".second", out);
    e.finish(out);
    EXPECT_EQ(show(out), show("..second\r\n.\r\n"));

    // A CR at the end of one message does not swallow the LF starting the next.
    out.clear();
    e.encode("x\r", out);
    e.finish(out);
    EXPECT_EQ(show(out), show("x\r\n.\r\n"));
    out.clear();
    e.encode("\ny", out);
    e.finish(out);
    EXPECT_EQ(show(out), show("\r\ny\r\n.\r\n"));

    // Same after reset() in the middle of a CRLF.
    out.clear();
    e.encode("x\r", out);
    e.reset();
    out.clear();
    e.encode("\n", out);
    e.finish(out);
    EXPECT_EQ(show(out), show("\r\n.\r\n"));
}

TEST(Encoder, BytesInCountsInput) {
    BodyEncoder e;
    std::string out;
    EXPECT_EQ(e.bytes_in(), 0u);
    e.encode("ab", out);
    EXPECT_EQ(e.bytes_in(), 2u);
    e.encode("\n\n", out);  // output grows by 4, input by 2
    EXPECT_EQ(e.bytes_in(), 4u);
    e.encode(".", out);
    EXPECT_EQ(e.bytes_in(), 5u);
    e.encode("\r", out);
    e.encode("\n", out);
    EXPECT_EQ(e.bytes_in(), 7u);
    e.encode("", out);
    EXPECT_EQ(e.bytes_in(), 7u);
}

TEST(Encoder, AtLineStart) {
    struct Row {
        std::vector<std::string> chunks;
        bool at_start;
    };
    const Row rows[] = {
        {{}, true},
        {{"a"}, false},
        {{"a\n"}, true},
        {{"a\r\n"}, true},
        {{"a\r"}, true},
        {{"a\r", "\n"}, true},
        {{"a\r", "b"}, false},
        {{"."}, false},
        {{"\n", "."}, false},
        {{"\n"}, true},
        {{"\r"}, true},
    };
    for (Mode mode : {Mode::dot_stuff, Mode::canonical}) {
        for (const Row& r : rows) {
            BodyEncoder e(mode);
            std::string out;
            std::string trace;
            for (const auto& c : r.chunks) {
                e.encode(c, out);
                trace += show(c) + " ";
            }
            EXPECT_EQ(e.at_line_start(), r.at_start) << trace;
        }
    }
}

// Memory: a message of any size passes through in bounded memory. The caller
// drains the output after each chunk; the output buffer must stay small.
TEST(Encoder, FiftyMegabytesInBoundedMemory) {
    const std::size_t chunk = 64 * 1024;
    const std::size_t total = 50u * 1024 * 1024;
    // Several chunk shapes, including the worst case (every byte a lone LF,
    // and ".\n" lines whose dots are doubled).
    std::vector<std::string> shapes;
    shapes.emplace_back(chunk, '\n');
    shapes.emplace_back(chunk, '\r');
    {
        std::string s;
        while (s.size() < chunk) s += ".\n";
        shapes.push_back(s.substr(0, chunk));
    }
    {
        std::string s;
        while (s.size() < chunk) s += "Lorem ipsum dolor sit amet, consectetur\n.dot line\r\n";
        shapes.push_back(s.substr(0, chunk));
    }
    shapes.emplace_back(chunk, 'x');  // one huge line

    for (Mode mode : {Mode::dot_stuff, Mode::canonical}) {
        BodyEncoder e(mode);
        std::string out;
        std::size_t max_capacity = 0;
        std::size_t fed = 0;
        std::size_t emitted = 0;
        for (std::size_t i = 0; fed < total; ++i) {
            const std::string& c = shapes[i % shapes.size()];
            e.encode(c, out);
            EXPECT_LE(out.size(), 2 * c.size() + 2);
            emitted += out.size();
            max_capacity = std::max(max_capacity, out.capacity());
            out.clear();
            fed += c.size();
        }
        e.finish(out);
        emitted += out.size();
        EXPECT_EQ(e.bytes_in() == fed || e.bytes_in() == 0, true)
            << "bytes_in " << e.bytes_in() << " after finish, fed " << fed;
        EXPECT_LE(max_capacity, 256u * 1024) << "output buffer grew to " << max_capacity;
        EXPECT_GT(emitted, fed);  // line ends and dots only add
    }
}

TEST(Encoder, BytesInBeforeFinishOnBigInput) {
    BodyEncoder e;
    std::string out;
    const std::string c(1 << 20, 'q');
    for (int i = 0; i < 8; ++i) {
        e.encode(c, out);
        out.clear();
    }
    EXPECT_EQ(e.bytes_in(), 8u << 20);
}

// ---------------------------------------------------------------------------
// Decoder.

struct DecCase {
    std::string wire;
    std::string decoded;
    std::size_t consumed;  // up to and including the terminator
};

std::vector<DecCase> dec_cases() {
    return {
        {".\r\n", "", 3},
        {".\r\nMAIL FROM:<a@b>\r\n", "", 3},
        {"a\r\n.\r\n", "a\r\n", 6},
        {"a\r\n.\r\nrest", "a\r\n", 6},
        {"a\r\n.\r\n.\r\n", "a\r\n", 6},
        {"..a\r\n.\r\n", ".a\r\n", 8},
        {"a\r\n..\r\n.\r\n", "a\r\n.\r\n", 10},
        {"\r\n.\r\n", "\r\n", 5},
        {"a\r\nb\r\n.\r\n", "a\r\nb\r\n", 9},
        {"a.\r\n.\r\n", "a.\r\n", 7},
        {"...\r\n.\r\n", "..\r\n", 8},
        // RFC 5321 4.5.2: a line that starts with a period and has more on
        // it loses the first period.
        {".x\r\n.\r\n", "x\r\n", 7},
        // Bare CR and LF are data, not line ends.
        {"a\rb\r\n.\r\n", "a\rb\r\n", 8},
        {"a\nb\r\n.\r\n", "a\nb\r\n", 8},
        {"a\r\r\n.\r\n", "a\r\r\n", 7},
        // "\n.\r\n" is not the terminator: the LF did not end a line.
        {"a\n.\r\n.\r\n", "a\n.\r\n", 8},
        {"a\r.\r\n.\r\n", "a\r.\r\n", 8},
    };
}

void PrintTo(const DecCase& c, std::ostream* os) { *os << show(c.wire); }

std::string dec_name(const ::testing::TestParamInfo<DecCase>& info) {
    return "case" + std::to_string(info.index);
}

class DecoderTable : public ::testing::TestWithParam<DecCase> {};

TEST_P(DecoderTable, OneShot) {
    const DecCase& c = GetParam();
    BodyDecoder d;
    std::string out;
    EXPECT_FALSE(d.done());
    EXPECT_EQ(d.decode(c.wire, out), c.consumed) << show(c.wire);
    EXPECT_TRUE(d.done());
    EXPECT_EQ(show(out), show(c.decoded));
    // After the terminator nothing more is taken.
    EXPECT_EQ(d.decode("more\r\n.\r\n", out), 0u);
    EXPECT_EQ(show(out), show(c.decoded));
    EXPECT_TRUE(d.done());
}

TEST_P(DecoderTable, SplitInTwoAtEveryOffset) {
    const DecCase& c = GetParam();
    std::string_view w(c.wire);
    for (std::size_t i = 0; i <= w.size(); ++i) {
        SCOPED_TRACE(show(c.wire) + " split at " + std::to_string(i));
        BodyDecoder d;
        std::string out;
        std::size_t used = d.decode(w.substr(0, i), out);
        if (i < c.consumed) {
            EXPECT_EQ(used, i);
            EXPECT_FALSE(d.done());
            used += d.decode(w.substr(i), out);
        } else {
            EXPECT_EQ(used, c.consumed);
            EXPECT_TRUE(d.done());
            EXPECT_EQ(d.decode(w.substr(i), out), 0u);
        }
        EXPECT_EQ(used, c.consumed);
        EXPECT_TRUE(d.done());
        EXPECT_EQ(show(out), show(c.decoded));
    }
}

TEST_P(DecoderTable, ByteByByte) {
    const DecCase& c = GetParam();
    BodyDecoder d;
    std::string out;
    std::size_t used = 0;
    for (std::size_t i = 0; i < c.wire.size(); ++i) {
        std::size_t n = d.decode(std::string_view(c.wire).substr(i, 1), out);
        EXPECT_EQ(n, i < c.consumed ? 1u : 0u) << "at byte " << i;
        EXPECT_EQ(d.done(), i + 1 >= c.consumed) << "at byte " << i;
        used += n;
    }
    EXPECT_EQ(used, c.consumed);
    EXPECT_EQ(show(out), show(c.decoded));
}

INSTANTIATE_TEST_SUITE_P(Table, DecoderTable, ::testing::ValuesIn(dec_cases()), dec_name);

TEST(Decoder, NotDoneWithoutTerminator) {
    for (const char* w : {"", "a", "a\r\n", "a\r\n.", "a\r\n.\r", "a\n.\n", "a\r\n..\r\n",
                          "x.\r\n"}) {
        BodyDecoder d;
        std::string out;
        EXPECT_EQ(d.decode(w, out), std::string_view(w).size()) << show(w);
        EXPECT_FALSE(d.done()) << show(w);
    }
}

TEST(Decoder, ResetForTheNextMessage) {
    BodyDecoder d;
    std::string out;
    const std::string two = "a\r\n.\r\n..b\r\n.\r\n";
    std::size_t n = d.decode(two, out);
    EXPECT_EQ(n, 6u);
    EXPECT_EQ(show(out), show("a\r\n"));
    d.reset();
    EXPECT_FALSE(d.done());
    out.clear();
    std::size_t m = d.decode(std::string_view(two).substr(n), out);
    EXPECT_EQ(m, two.size() - n);
    EXPECT_TRUE(d.done());
    EXPECT_EQ(show(out), show(".b\r\n"));
}

TEST(Decoder, RoundTripProperty) {
    // decode(encode(x)) == x with line ends made CRLF and a final CRLF added
    // when x did not end with a line end; "" stays "".
    std::mt19937 rng(2033);
    for (int n = 0; n < 3000; ++n) {
        const std::string in = random_body(rng, 80);
        BodyEncoder e;
        std::string wire;
        for (std::string_view p : random_pieces(in, rng, 9)) e.encode(p, wire);
        e.finish(wire);
        const std::string after = "LHLO next\r\n";
        const std::string stream = wire + after;

        BodyDecoder d;
        std::string out;
        std::size_t used = 0;
        for (std::string_view p : random_pieces(stream, rng, 11)) {
            used += d.decode(p, out);
            if (d.done()) break;
        }
        ASSERT_TRUE(d.done()) << show(in) << " -> " << show(wire);
        ASSERT_EQ(used, wire.size()) << show(in) << " -> " << show(wire);
        ASSERT_EQ(show(out), show(normalise(in))) << "input " << show(in);
    }
    // The empty message.
    BodyDecoder d;
    std::string out;
    EXPECT_EQ(d.decode(encode_once(""), out), 3u);
    EXPECT_EQ(out, "");
    EXPECT_TRUE(d.done());
}

TEST(Decoder, RoundTripLargeBody) {
    std::mt19937 rng(3030);
    std::string in;
    for (int i = 0; i < 20000; ++i) in += random_body(rng, 20);
    BodyEncoder e;
    std::string wire;
    for (std::string_view p : random_pieces(in, rng, 4096)) e.encode(p, wire);
    e.finish(wire);
    ASSERT_EQ(wire, reference_wire(in));
    BodyDecoder d;
    std::string out;
    std::size_t used = 0;
    for (std::string_view p : random_pieces(wire, rng, 4096)) used += d.decode(p, out);
    EXPECT_TRUE(d.done());
    EXPECT_EQ(used, wire.size());
    EXPECT_TRUE(out == normalise(in));
}

}  // namespace

TEST(CanonicalLength, IsTheSizeOfTheCanonicalForm) {
    const char* cases[] = {"", "a", "a\n", "a\r\n", "a\r", "\r\n", "\n\n", "\r\r\n", "a\rb\nc\r\nd", ".x\n..\n"};
    for (const char* c : cases) {
        lmtp::BodyEncoder enc(lmtp::BodyEncoder::Mode::canonical);
        std::string out;
        enc.encode(c, out);
        enc.finish(out);
        EXPECT_EQ(lmtp::canonical_length(c), out.size()) << c;
    }
    EXPECT_EQ(lmtp::canonical_length("a\nb"), 6u);  // a CRLF b CRLF
}

TEST(CanonicalLength, InPiecesSplitAnywhere) {
    // Every split of each message in two and in three pieces, empty pieces
    // included: a CRLF cut between two pieces is still one line end.
    const char* cases[] = {"", "a", "a\n", "a\r\n", "a\r", "\r\n", "\r\r\n", "a\rb\nc\r\nd", "x\r\n\r\ny"};
    std::vector<std::string> messages(std::begin(cases), std::end(cases));
    messages.push_back(std::string("\0", 1));  // ends in a NUL: still needs its final CRLF
    messages.push_back(std::string("a\r\0", 3));
    for (const std::string& m : messages) {
        const std::uint64_t whole = lmtp::canonical_length(m);
        for (std::size_t i = 0; i <= m.size(); ++i) {
            for (std::size_t j = i; j <= m.size(); ++j) {
                lmtp::CanonicalLength c;
                c.add(std::string_view(m).substr(0, i));
                c.add(std::string_view(m).substr(i, j - i));
                c.add(std::string_view(m).substr(j));
                ASSERT_EQ(c.total(), whole) << "split at " << i << ", " << j << " of size " << m.size();
            }
        }
    }
    EXPECT_EQ(lmtp::CanonicalLength().total(), 0u);
    // Long pieces, across the 64-octet blocks, against the encoder.
    std::mt19937 rng(11);
    const char alphabet[] = {'\r', '\n', 'a', '.'};
    std::string in(5000, 'x');
    for (char& ch : in) ch = alphabet[rng() % sizeof alphabet];
    for (std::size_t piece : {1u, 63u, 64u, 65u, 1000u}) {
        lmtp::CanonicalLength c;
        for (std::size_t at = 0; at < in.size(); at += piece) c.add(std::string_view(in).substr(at, piece));
        EXPECT_EQ(c.total(), lmtp::canonical_length(in)) << piece;
    }
}

TEST(CanonicalLength, LongInputsAcrossEveryBlockBoundary) {
    // 64 octets at a time, with a CR ending one block and its LF starting the next, and every mix.
    std::mt19937 rng(7);
    const char alphabet[] = {'\r', '\n', 'a', '.', '\r', '\n'};
    for (std::size_t size : {63u, 64u, 65u, 127u, 128u, 129u, 1000u, 4096u, 70000u}) {
        for (int round = 0; round < 20; ++round) {
            std::string in(size, 'x');
            for (char& c : in) c = alphabet[rng() % sizeof alphabet];
            if (round == 0 && size > 64) in[63] = '\r', in[64] = '\n';
            lmtp::BodyEncoder enc(lmtp::BodyEncoder::Mode::canonical);
            std::string out;
            enc.encode(in, out);
            enc.finish(out);
            ASSERT_EQ(lmtp::canonical_length(in), out.size()) << "size " << size << " round " << round;
        }
    }
}

// ---------------------------------------------------------------------------
// The encoder's scan (core/src/body_scan.hpp): the 64-bytes-at-once scan()
// gives what the byte-at-a-time scan_scalar() gives, block for block and
// call for call.

namespace {

// Both scans over in[from, to), every way the encoder starts one: DATA or
// BDAT, at a line start or in a line, a few blocks a call or one.
void expect_scans_agree(std::string_view in, std::size_t from, std::size_t to) {
    using lmtp::detail::scan_trace;
    const char* begin = in.data() + from;
    const char* end = in.data() + to;
    for (bool stuff : {true, false}) {
        for (bool line_start : {true, false}) {
            for (std::size_t max : {1u, 3u}) {
                ASSERT_TRUE(scan_trace(lmtp::detail::scan, begin, end, stuff, line_start, max) ==
                            scan_trace(lmtp::detail::scan_scalar, begin, end, stuff, line_start, max))
                    << show(in.substr(from, to - from)) << " from " << from << " to " << to << (stuff ? " DATA" : " BDAT")
                    << (line_start ? " at a line start" : " in a line") << ", " << max << " a call";
            }
        }
    }
}

}  // namespace

// CR, LF and dot where 16-byte loads and 64-byte blocks meet (15/16/17,
// 63/64/65, 127/128/129 from where the buffer starts), and the scans started
// at every offset (so every alignment and every place in a block) and ended
// at every later one.
TEST(BodyScan, SimdAgreesWithScalarAtEveryOffsetAndAlignment) {
    const char* marks[] = {"\r", "\n", ".", "\r\n", "\n.", "\r.", "\r\r", "\n\r", ".\r\n"};
    for (const char* mark : marks) {
        std::string in(150, 'x');
        for (std::size_t at : {15u, 16u, 17u, 63u, 64u, 65u, 127u, 128u, 129u}) in.replace(at, std::strlen(mark), mark);
        for (std::size_t from = 0; from < in.size(); ++from)
            for (std::size_t to = from; to <= in.size(); ++to) {
                expect_scans_agree(in, from, to);
                if (::testing::Test::HasFatalFailure()) return;
            }
    }
}

// The count of bare line ends (SIZE's canonical length): 16 bytes at a time
// against a byte at a time, over every [from, to) of a buffer with CR and LF
// where the loads meet, and over long runs (more than 255 loads of byte
// counters, every byte bare or none).
TEST(BodyScan, BareCountAgreesWithScalar) {
    using lmtp::detail::count_bare;
    using lmtp::detail::count_bare_scalar;
    const char* marks[] = {"\r", "\n", "\r\n", "\n\r", "\r\r", "\n\n"};
    for (const char* mark : marks) {
        std::string in(80, 'x');
        for (std::size_t at : {0u, 14u, 15u, 16u, 17u, 31u, 32u, 33u, 78u}) in.replace(at, std::strlen(mark), mark);
        for (std::size_t from = 0; from <= in.size(); ++from)
            for (std::size_t to = from; to <= in.size(); ++to)
                ASSERT_EQ(count_bare(in.data() + from, in.data() + to),
                          count_bare_scalar(in.data() + from, in.data() + to))
                    << show(in.substr(from, to - from));
    }
    for (char fill : {'\n', '\r', 'x'}) {
        const std::string all(16 * 300 + 7, fill);  // every byte bare (LF, CR) or none
        EXPECT_EQ(count_bare(all.data(), all.data() + all.size()), fill == 'x' ? 0u : all.size() - 1);
    }
    std::string crlf;
    for (int i = 0; i < 3000; ++i) crlf += "abc\r\n";
    EXPECT_EQ(count_bare(crlf.data(), crlf.data() + crlf.size()), 0u);
    crlf[5003] = 'x';  // a CR gone: its LF is bare
    crlf[9004] = 'x';  // an LF gone: its CR is bare
    EXPECT_EQ(count_bare(crlf.data(), crlf.data() + crlf.size()), 2u);
    std::mt19937 rng(5);
    const char alphabet[] = {'\r', '\n', 'a'};
    for (int round = 0; round < 2000; ++round) {
        std::string in(rng() % 300, 'x');
        for (char& c : in) c = alphabet[rng() % sizeof alphabet];
        ASSERT_EQ(count_bare(in.data(), in.data() + in.size()), count_bare_scalar(in.data(), in.data() + in.size()))
            << show(in);
    }
}

TEST(BodyScan, SimdAgreesWithScalarOnRandomInputs) {
    // Mostly CR, LF and dots, some long runs without a line end (a long line
    // the scan skips with memchr), of every length up to a few blocks.
    std::mt19937 rng(6409);
    const char alphabet[] = {'\r', '\n', '.', 'a', '\r', '\n'};
    for (int round = 0; round < 3000; ++round) {
        std::string in(rng() % 400, 'x');
        if (round % 2 == 0)
            for (char& c : in) c = alphabet[rng() % sizeof alphabet];
        else
            for (int k = 0; k < 4 && !in.empty(); ++k) in[rng() % in.size()] = alphabet[rng() % sizeof alphabet];
        expect_scans_agree(in, 0, in.size());
        if (::testing::Test::HasFatalFailure()) return;
    }
}
