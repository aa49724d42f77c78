// Status codes and the exception type of the liblmtp core.
//
// The statuses come from one table, lmtp/status_table.h, as does everything
// that names them (lmtp.h's enum, the faces' names). Their numbers are part of
// the stable C ABI: new codes are added at the end; none is ever renumbered or
// removed.
#pragma once

#include <stdexcept>
#include <string>

#include "lmtp/status_table.h"

namespace lmtp {

enum class Status : int {
#define LMTP_STATUS_ENUM(c_name, name, value, reply_code, description, note) name = value,
    LMTP_STATUS_TABLE(LMTP_STATUS_ENUM)
#undef LMTP_STATUS_ENUM
};

// How many statuses there are: every value from 0 to status_count() - 1 is one.
int status_count() noexcept;
// Short identifier, e.g. "timeout"; "unknown" for a value that is none.
const char* status_name(Status s) noexcept;
// One sentence for people, e.g. "timed out waiting for the server".
const char* status_description(Status s) noexcept;
// For a refusal made before anything was sent (bad input, an extension not
// offered, too big...), the code a server would have answered with (501, 555,
// 552...); 0 for the other statuses.
int status_reply_code(Status s) noexcept;

// What the core throws. `what()` is the full, specific message
// ("RCPT TO address contains a line feed (LF)"), `status()` the category.
class Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message, int os_error = 0)
        : std::runtime_error(message), status_(status), os_error_(os_error) {}
    Status status() const noexcept { return status_; }
    // The errno behind a connect or I/O failure (the last address tried), else 0.
    int os_error() const noexcept { return os_error_; }

private:
    Status status_;
    int os_error_;
};

}  // namespace lmtp
