"""The package imports and says what it is."""
import re
import smtplib

import lmtp


def test_version_and_classes():
    assert re.fullmatch(r"\d+\.\d+\.\d+", lmtp.__version__)
    assert issubclass(lmtp.LMTPTimeoutError, TimeoutError)
    assert issubclass(lmtp.LMTPTimeoutError, smtplib.SMTPServerDisconnected)
    assert lmtp.SMTPRecipientsRefused is smtplib.SMTPRecipientsRefused
