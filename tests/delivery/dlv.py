"""A fastpost instance running the delivery side, for tests: qmgr, trivial-rewrite,
bounce/defer/trace, error/retry/discard, and the scripted test agent as smtp and relay.

Not a test module. ``DeliveryInstance(fastpost_instance, tmp_path, main_cf={...})``
starts it; ``inject([...])`` commits messages through the queue store's Committer in a
forked process (as the mail_owner when root: the store belongs to the daemons), then
triggers qmgr; ``rules([...])`` tells the test agent how to answer (see
tests/testdaemons/scripted_agent.py); ``attempts()`` returns what it was asked;
``info(id)``/``logs(id, kind)`` read the queue index.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import time
from pathlib import Path

from fastpost.mail import ipc
from fastpost.mail.config import Config
from fastpost.mail.queue import HOLD, INCOMING, QueueSettings, QueueStore

HERE = Path(__file__).resolve().parent

MASTER_CF = """\
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -    -  trivial-rewrite
bounce    unix  -  -  n  -    0  bounce
defer     unix  -  -  n  -    0  bounce
trace     unix  -  -  n  -    0  bounce
smtp      unix  -  -  n  -    {smtp_maxproc}  testdaemons.scripted_agent {rules} {attempts}
relay     unix  -  -  n  -    -  testdaemons.scripted_agent {rules} {attempts}
error     unix  -  -  n  -    -  error
retry     unix  -  -  n  -    -  error
discard   unix  -  -  n  -    -  discard
flush     unix  n  -  n  -    0  flush
"""

MAIN_CF = {
    "mydestination": "$myhostname, localhost",
    "default_transport": "smtp",
    "relay_transport": "relay",
    "queue_run_delay": "1s",
    "minimal_backoff_time": "2s",
    "maximal_backoff_time": "4s",
    "fastpost_backoff_jitter": "0",
    "ipc_idle": "30s",
}


class DeliveryInstance:
    def __init__(self, fastpost_instance, tmp_path, *, main_cf: dict | None = None,
                 master_extra: str = "", smtp_maxproc: str = "-", start: bool = True):
        self.rules_path = Path(tmp_path) / "rules.json"
        self.attempts_path = Path(tmp_path) / "attempts.jsonl"
        self.rules_path.write_text("[]")
        self.attempts_path.write_text("")
        master = MASTER_CF.format(rules=self.rules_path, attempts=self.attempts_path,
                                  smtp_maxproc=smtp_maxproc) + master_extra
        self.inst = fastpost_instance(master_cf=master, main_cf={**MAIN_CF, **(main_cf or {})})
        self.queue = str(self.inst.queue)
        self.etc = str(self.inst.etc)
        if start:
            self.inst.start()

    # -- driving --------------------------------------------------------------------------

    def rules(self, rules: list) -> None:
        """Rewrite the agent's rules in place (same file: the agent holds it open)."""
        with open(self.rules_path, "w") as fh:
            json.dump(rules, fh)

    def inject(self, messages: list, *, trigger: bool = True) -> list[str]:
        """Commit messages (see _inject); return their queue IDs."""
        return inject(self.etc, messages, trigger=trigger)

    def command(self, *args, **kw):
        return self.inst.command(*args, **kw)

    def flush(self) -> None:
        self.command("flush", check=True)

    # -- observing --------------------------------------------------------------------------

    def attempts(self) -> list[dict]:
        text = self.attempts_path.read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [a for a in lines if "started" not in a]

    def started(self) -> list[dict]:
        """The requests under way or answered for recipients of rules with "mark"."""
        text = self.attempts_path.read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [a for a in lines if "started" in a]

    def log(self) -> str:
        return self.inst.log_text()

    def wait_log(self, pattern: str, **kw) -> str:
        return self.inst.wait_log(pattern, **kw)

    def _store(self) -> QueueStore:
        return QueueStore.open(settings=QueueSettings(self.queue), readonly=True)

    def info(self, queue_id: str):
        with self._store() as s:
            return s.get(queue_id)

    def logs(self, queue_id: str, kind: str) -> list[bytes]:
        with self._store() as s:
            return s.logs(queue_id, kind)

    def read(self, queue_id: str) -> bytes:
        with self._store() as s:
            return s.read(queue_id)

    def counts(self) -> dict:
        with self._store() as s:
            return s.counts()

    def messages(self, states=None) -> list:
        with self._store() as s:
            return list(s.messages(states))

    def wait(self, predicate, timeout: float = 30, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout}s\n{self.log()[-6000:]}")
            time.sleep(0.05)

    def wait_gone(self, ids, timeout: float = 30) -> None:
        self.wait(lambda: all(self.info(i) is None for i in ids), timeout,
                  f"messages {ids} removed")

    def notices(self) -> list:
        """Messages from the null sender in the queue (notices), as MessageInfo."""
        return [m for m in self.messages() if m.sender == ""]


# -- injecting messages: a committer process, as cleanup will be --------------------------

async def _inject(cfg: Config, messages: list, trigger: bool) -> list[str]:
    """Each message: {"sender", "rcpts": ["x@y" | {"address", "orig", "notify", "orcpt"}],
    "body", "arrival", "attrs": {...}, "envid", "ret", "state": "incoming"|"hold",
    "size": pad the body to about this many bytes}."""
    # The current directory is the queue directory (as for the daemons, whose user
    # may not be able to reach it by its full path).
    store = QueueStore.open(settings=QueueSettings.from_config(cfg, queue_directory="."))
    committer = store.committer("test-inject")
    ids = []
    for m in messages:
        b = committer.builder()
        b.time(m.get("arrival", time.time()))
        b.attr("rewrite_context", "local")
        for k, v in m.get("attrs", {}).items():
            b.attr(k, v)
        if m.get("envid"):
            b.attr("envelope_id", m["envid"])
        if m.get("ret"):
            b.attr("ret_flags", str(m["ret"]))
        b.set_sender(m.get("sender", "sender@example.org"))
        for r in m["rcpts"]:
            if isinstance(r, str):
                r = {"address": r}
            b.add_recipient(r["address"], r.get("orig"), dsn_orcpt=r.get("orcpt"),
                            dsn_notify=r.get("notify", 0))
        body = m.get("body", f"Subject: test\nMessage-Id: <{b.queue_id}@test>\n\nhello\n")
        if m.get("size"):
            line = "x" * 76 + "\n"
            body += line * max(0, (m["size"] - len(body)) // len(line))
        await b.write(body.encode())
        ids.append(await committer.commit(b, HOLD if m.get("state") == "hold" else INCOMING))
    await committer.close()
    store.close()
    if trigger:
        try:
            await ipc.async_mail_trigger(".", cfg.get("queue_service_name"), b"I")
        except ipc.IPCError:
            pass  # qmgr not running: the test starts it later
    return ids


def inject(config_dir: str, messages: list, *, trigger: bool = True) -> list[str]:
    """Run _inject in a forked child (as the mail_owner when root) and return the IDs."""
    cfg = Config(config_dir)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(r)
            os.chdir(cfg.get("queue_directory"))
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postfix")
                os.setgroups([pw.pw_gid])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            ids = asyncio.run(_inject(cfg, messages, trigger))
            os.write(w, json.dumps(ids).encode())
            status = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(w, f"ERROR {type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode()
    if status != 0 or out.startswith("ERROR"):
        raise AssertionError(f"inject failed: {out}")
    return json.loads(out)
