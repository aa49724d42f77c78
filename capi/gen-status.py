#!/usr/bin/env python3
"""Writes the lmtp_status enum of capi/include/lmtp.h from the one status table,
core/include/lmtp/status_table.h: the block between the "status table" markers.

    capi/gen-status.py            rewrite the block (after editing the table)
    capi/gen-status.py --check    exit 1 if the block is not what the table gives

The ctest status_table runs --check.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE = ROOT / "core" / "include" / "lmtp" / "status_table.h"
HEADER = ROOT / "capi" / "include" / "lmtp.h"
BEGIN = "/* -- status table: made from core/include/lmtp/status_table.h by capi/gen-status.py -- */"
END = "/* -- end of the status table -- */"
ENTRY = re.compile(r'X\((\w+),\s*(\w+),\s*(\d+),\s*(\d+),\s*\\\s*"([^"\\]*)",\s*\\\s*"([^"\\]*)"\)')


def entries():
    text = TABLE.read_text()
    found = [(m.group(1), int(m.group(3)), m.group(6)) for m in ENTRY.finditer(text)]
    if not found or len(found) != text.count("    X("):
        sys.exit("gen-status.py: cannot read every entry of %s" % TABLE)
    if [value for _, value, _ in found] != list(range(len(found))):
        sys.exit("gen-status.py: the values in %s must be 0, 1, 2... in order" % TABLE)
    return found


def block():
    rows = entries()
    width = max(len("%s = %d," % (name, value)) for name, value, _ in rows)
    lines = [BEGIN, "typedef enum lmtp_status {"]
    for i, (name, value, note) in enumerate(rows):
        item = "%s = %d%s" % (name, value, "," if i + 1 < len(rows) else "")
        lines.append("    %-*s /* %s */" % (width, item, note))
    lines += ["} lmtp_status;", END]
    return "\n".join(lines)


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit("usage: capi/gen-status.py [--check]")
    header = HEADER.read_text()
    start, end = header.find(BEGIN), header.find(END)
    if start < 0 or end < start:
        sys.exit("gen-status.py: no status table markers in %s" % HEADER)
    updated = header[:start] + block() + header[end + len(END):]
    if check:
        if updated != header:
            sys.exit("status_table: the lmtp_status enum of %s is not what %s gives: run capi/gen-status.py"
                     % (HEADER, TABLE))
        print("status_table: lmtp.h's lmtp_status enum is made from status_table.h (%d statuses)" % len(entries()))
    elif updated != header:
        HEADER.write_text(updated)
        print("gen-status.py: wrote the lmtp_status enum of %s" % HEADER)


if __name__ == "__main__":
    main()
