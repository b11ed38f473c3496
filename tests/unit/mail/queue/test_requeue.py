"""super -r of a message outside active (fastpost.mail.queue.requeue): the claim that
keeps qmgr from activating it while its maildrop copy is written, and how a failed
copy is undone. The store, qmgr's activation step and maildrop are the real ones; the
only instrumentation is a wrapper around maildrop.drop that runs qmgr's activation
at the moment the copy is being written (the interleaving that used to race)."""

import os
import time

import pytest

from fastpost.daemons.qmgr import manager
from fastpost.mail import maildrop
from fastpost.mail.queue import index as ix
from fastpost.mail.queue import requeue as rq

from .conftest import fill


def _defer(store, qid, when):
    with store.edit() as ed:
        ed.set_state(qid, ix.DEFERRED, next_retry=when)


def _activate_all(store):
    picked, _more, _blocked = manager._activate(store, [ix.INCOMING, ix.DEFERRED], time.time(),
                                                100, frozenset())
    return [item[0].queue_id for item in picked]


def test_claimed_message_is_not_activated_while_copied(store, tmp_path, monkeypatch):
    qid, other = fill(store, 2)
    _defer(store, qid, time.time() - 5)
    _defer(store, other, time.time() - 5)
    drop_dir = tmp_path / "maildrop"
    drop_dir.mkdir()
    real_drop = maildrop.drop
    seen = {}

    def drop_while_qmgr_runs(directory, data, owner=None, name=None):
        info = store.get(qid, recipients=False)
        seen["state"], seen["flags"] = info.state, info.flags
        seen["activated"] = _activate_all(store)  # qmgr's scan at the worst moment
        return real_drop(directory, data, owner, name)

    monkeypatch.setattr(rq.maildrop, "drop", drop_while_qmgr_runs)
    assert rq.requeue(store, qid, str(drop_dir)) is True
    assert seen["state"] == ix.HOLD and seen["flags"] & ix.FLAG_REQUEUE
    assert seen["activated"] == [other]  # the other deferred message, not the claimed one
    assert store.get(qid) is None
    files = os.listdir(drop_dir)
    assert len(files) == 1
    copy = maildrop.parse((drop_dir / files[0]).read_bytes())
    assert ("requeue", qid) in copy.attrs
    assert [r[0] for r in copy.recipients] == ["rcpt0@example.net"]


def test_failed_copy_undoes_the_claim(store, tmp_path):
    (qid,) = fill(store, 1)
    when = time.time() + 3600
    _defer(store, qid, when)
    with store.edit() as ed:
        ed.set_flags(qid, add=ix.FLAG_DELAY_WARNED)
    with pytest.raises(OSError):
        rq.requeue(store, qid, str(tmp_path / "no-such-maildrop"))
    info = store.get(qid, recipients=False)
    assert info.state == ix.DEFERRED
    assert info.next_retry == pytest.approx(when)
    assert info.flags == ix.FLAG_DELAY_WARNED


def test_nothing_left_to_deliver_stays_as_it_was(store, tmp_path):
    (qid,) = fill(store, 1)
    with store.edit() as ed:
        ed.set_state(qid, ix.INCOMING)
        rcpt = ed.get(qid).recipients[0]
        ed.mark_recipients(qid, [rcpt.offset], ix.RCPT_DONE)
    drop_dir = tmp_path / "maildrop"
    drop_dir.mkdir()
    assert rq.requeue(store, qid, str(drop_dir)) is False
    assert store.get(qid, recipients=False).state == ix.INCOMING
    assert not store.get(qid, recipients=False).flags & ix.FLAG_REQUEUE
    assert os.listdir(drop_dir) == []
