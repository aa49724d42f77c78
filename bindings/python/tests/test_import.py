"""The package imports and says what it is."""
import os
import re
import smtplib
import subprocess
import sys

import lmtp


def test_version_and_classes():
    assert re.fullmatch(r"\d+\.\d+\.\d+", lmtp.__version__)
    assert issubclass(lmtp.LMTPTimeoutError, TimeoutError)
    assert issubclass(lmtp.LMTPTimeoutError, smtplib.SMTPServerDisconnected)
    assert lmtp.SMTPRecipientsRefused is smtplib.SMTPRecipientsRefused


def test_asyncio_faces_load_when_asked_for():
    # `import lmtp` stays as quick as before the asyncio faces: asyncio is loaded by the
    # first use of AsyncLMTP or AsyncPool, which are then the same classes however reached.
    code = (
        "import sys, lmtp\n"
        "assert 'asyncio' not in sys.modules and 'lmtp.aio' not in sys.modules, sorted(sys.modules)\n"
        "assert {'AsyncLMTP', 'AsyncPool', 'Pool'} <= set(dir(lmtp))\n"
        "from lmtp import AsyncPool\n"
        "from lmtp.aio import AsyncLMTP\n"
        "assert lmtp.AsyncLMTP is AsyncLMTP and AsyncPool.__name__ == 'AsyncPool'\n"
        "assert 'asyncio' in sys.modules\n"
        "try:\n"
        "    lmtp.NoSuchName\n"
        "except AttributeError as e:\n"
        "    assert 'NoSuchName' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
