"""Maildir delivery (fastpost.mail.maildir): layout, names, modes, concurrency, limits."""

import mailbox
import os
import re
import threading

import pytest

from fastpost.mail import maildir


def test_creates_the_maildir_and_links_into_new(tmp_path):
    md = tmp_path / "home" / "Maildir"
    (tmp_path / "home").mkdir()
    name = maildir.deliver(str(md) + "/", b"Subject: one\n\nbody\n", now=1795249112.175842)
    assert re.fullmatch(rf"{md}/new/1795249112\.V[0-9a-f]+I[0-9a-f]+M175842\.[^/]+", name)
    for sub in ("", "tmp", "new", "cur"):
        assert (md / sub).stat().st_mode & 0o777 == 0o700
    assert os.stat(name).st_mode & 0o777 == 0o600
    assert not os.listdir(md / "tmp")
    (m,) = list(mailbox.Maildir(md, create=False))
    assert m["Subject"] == "one"


def test_many_concurrent_deliveries_get_distinct_files(tmp_path):
    md = str(tmp_path / "md")
    names = []

    def worker(n):
        for i in range(25):
            names.append(maildir.deliver(md, b"Subject: %d-%d\n\nx\n" % (n, i)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 200
    assert sorted(m["Subject"] for m in mailbox.Maildir(md, create=False)) == sorted(
        f"{n}-{i}" for n in range(8) for i in range(25))


def test_size_limit_and_errors(tmp_path):
    with pytest.raises(maildir.MaildirError) as exc:
        maildir.deliver(str(tmp_path / "md"), b"x" * 100, size_limit=50)
    assert (exc.value.dsn, exc.value.text) == ("5.2.2", "error writing message: File too large")
    assert not os.listdir(tmp_path / "md" / "tmp")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(maildir.MaildirError) as exc:
        maildir.deliver(str(blocker) + "/", b"x")
    assert exc.value.dsn == "5.2.0" and exc.value.text.startswith(f"create {blocker}/tmp/")


def test_hostname_escapes():
    assert "/" not in maildir.hostname() and ":" not in maildir.hostname()
