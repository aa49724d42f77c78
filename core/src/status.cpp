#include "lmtp/status.hpp"

namespace lmtp {

namespace {

struct StatusInfo {
    int value;
    const char* name;
    const char* description;
    int reply_code;
};

constexpr StatusInfo kStatuses[] = {
#define LMTP_STATUS_INFO(c_name, name, value, reply_code, description, note) {value, #name, description, reply_code},
    LMTP_STATUS_TABLE(LMTP_STATUS_INFO)
#undef LMTP_STATUS_INFO
};
constexpr int kCount = static_cast<int>(sizeof kStatuses / sizeof kStatuses[0]);

// The table is dense, in order, from 0: a status is its own index.
constexpr bool dense() {
    for (int i = 0; i < kCount; ++i)
        if (kStatuses[i].value != i) return false;
    return true;
}
static_assert(dense(), "status_table.h: the values must be 0, 1, 2... in order");

const StatusInfo* info(Status s) noexcept {
    const int i = static_cast<int>(s);
    return i >= 0 && i < kCount ? &kStatuses[i] : nullptr;
}

}  // namespace

int status_count() noexcept {
    return kCount;
}

const char* status_name(Status s) noexcept {
    const StatusInfo* i = info(s);
    return i ? i->name : "unknown";
}

const char* status_description(Status s) noexcept {
    const StatusInfo* i = info(s);
    return i ? i->description : "unknown status";
}

int status_reply_code(Status s) noexcept {
    const StatusInfo* i = info(s);
    return i ? i->reply_code : 0;
}

}  // namespace lmtp
