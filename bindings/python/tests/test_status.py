"""lmtp.Status: made from liblmtp's one status table, the same names and numbers as lmtp.h."""
import pathlib
import re

import pytest

import lmtp

HEADER = pathlib.Path(__file__).resolve().parents[3] / "capi" / "include" / "lmtp.h"


def header_statuses():
    if not HEADER.is_file():
        pytest.skip("no lmtp.h at %s (the suite runs from a liblmtp source tree)" % HEADER)
    block = HEADER.read_text().split("typedef enum lmtp_status {", 1)[1].split("} lmtp_status;", 1)[0]
    found = re.findall(r"^\s*LMTP_(?:ERR_)?(\w+) = (\d+),?", block, re.M)
    assert found, "no enumerators read from lmtp.h"
    return [(name, int(value)) for name, value in found]


def test_status_is_lmtp_h_enum():
    assert [(s.name, s.value) for s in lmtp.Status] == header_statuses()


def test_status_members():
    assert lmtp.Status.OK == 0
    assert lmtp.Status.TIMEOUT == 8
    assert lmtp.Status.REJECTED == 12
    assert lmtp.Status(22) is lmtp.Status.INSECURE
    assert [s.value for s in lmtp.Status] == list(range(len(lmtp.Status)))
    assert "Status" in lmtp.__all__
