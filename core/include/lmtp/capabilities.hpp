// The server's LHLO reply: its name and the service extensions it offers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/reply.hpp"

namespace lmtp {

class Capabilities {
public:
    struct Entry {
        std::string keyword;  // upper-cased, e.g. "SIZE"
        std::string params;   // the rest of the line, e.g. "10240000"; may be empty
    };

    Capabilities() = default;
    // Reads a positive LHLO reply: the first line names the server, each
    // further line is "KEYWORD [params]". Lines that are not a valid keyword
    // are skipped (servers put odd things there); a later duplicate keyword
    // replaces an earlier one.
    static Capabilities parse(const Reply& lhlo_reply);

    bool empty() const { return entries_.empty() && domain_.empty(); }
    // Keywords compare case-insensitively.
    bool has(std::string_view keyword) const;
    std::optional<std::string_view> params(std::string_view keyword) const;
    const std::vector<Entry>& entries() const { return entries_; }
    // First word of the first line of the LHLO reply.
    const std::string& domain() const { return domain_; }

    // SIZE (RFC 1870): the advertised limit in octets; 0 when SIZE is not
    // offered, offered without a value, or offered with 0 (no fixed limit).
    std::uint64_t size_limit() const { return size_limit_; }
    // AUTH (RFC 4954) mechanisms, upper-cased, in the server's order; also read
    // from the old "AUTH=" form.
    const std::vector<std::string>& auth_mechanisms() const { return auth_; }

    // The extensions a delivery consults for every message, looked up once by parse().
    struct Offered {
        bool pipelining = false;  // PIPELINING (RFC 2920)
        bool chunking = false;    // CHUNKING (RFC 3030)
        bool size = false;        // SIZE (RFC 1870), with or without a limit
    };
    const Offered& offered() const { return offered_; }

private:
    std::vector<Entry> entries_;
    std::string domain_;
    std::uint64_t size_limit_ = 0;
    std::vector<std::string> auth_;
    Offered offered_;
};

// ASCII case-insensitive comparison.
bool iequals(std::string_view a, std::string_view b);

}  // namespace lmtp
