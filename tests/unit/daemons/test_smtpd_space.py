"""queue_minfree in smtpd: enough_space() and the answer it publishes for MAIL.

SmtpdService.enough_space() keeps the queue file system's free space a second; while
that space is enough for a message without SIZE=, space_ok_until says until when, and
the session core's MAIL reads it instead of calling (the same answer, the same statvfs
times). These tests hold space_ok_until to enough_space()'s own answers, with the real
file system's free space on either side of queue_minfree.
"""

from __future__ import annotations

import asyncio
import math
import os

import pytest

from fastpost.daemons.smtpd.service import SmtpdService
from fastpost.mail.config import Config

MAIN_CF = """\
compatibility_level = 3.6
myhostname = fastpost.localdomain
mydestination =
inet_protocols = ipv4
smtpd_peername_lookup = no
"""


@pytest.fixture(autouse=True)
def _loop():
    global _LOOP
    _LOOP = asyncio.new_event_loop()
    yield
    _LOOP.close()


def _service(tmp_path, extra: str, queue_directory=None) -> SmtpdService:
    qdir = queue_directory or str(tmp_path)
    cfg = Config(str(tmp_path), text=MAIN_CF + extra + f"queue_directory = {qdir}\n")
    return SmtpdService.from_config(cfg, sink=None, loop=_LOOP)


def test_space_ok_until_follows_enough_space(tmp_path):
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    roomy = _service(tmp_path, "queue_minfree = 0\nmessage_size_limit = 1000\n")
    assert roomy.space_ok_until == -math.inf  # nothing asked yet: the core calls
    assert roomy.enough_space(None)
    assert roomy.space_ok_until == roomy._space_checked + 1.0
    kept = roomy.space_ok_until
    # a SIZE= larger than the free space: refused, the kept answer for None unchanged
    assert not roomy.enough_space(free * 4)
    assert roomy.space_ok_until == kept
    # a second later enough_space() asks statvfs again and moves the time on
    roomy._space_checked -= 2.0
    assert roomy.enough_space(None)
    assert roomy.space_ok_until > kept - 2.0 and roomy.space_ok_until == roomy._space_checked + 1.0

    full = _service(tmp_path, f"queue_minfree = {free * 4}\n")
    assert not full.enough_space(None)
    assert full.space_ok_until == -math.inf  # not enough: every MAIL asks enough_space()
    # 1.5 x message_size_limit counts as Postfix's rule says
    big = _service(tmp_path, f"queue_minfree = 0\nmessage_size_limit = {free}\n")
    assert not big.enough_space(None) and big.space_ok_until == -math.inf


def test_no_queue_directory_is_not_refused(tmp_path):
    svc = _service(tmp_path, "", queue_directory=str(tmp_path / "missing"))
    assert svc.enough_space(None) and svc.enough_space(10**15)
    assert svc.space_ok_until == svc._space_checked + 1.0
