"""Who may submit mail, list the queue, flush it: authorized_*_users.

Postfix counterpart: the checks in sendmail(1), postdrop(1) and postqueue(1)
(src/global/user_acl.c); the wording and exit codes below are those of Postfix 3.7 as
run on this machine (docs/submission.md, "authorized_*_users").

    authorized_submit_users   sendmail (-bm, -t, -bv, -bs) and the set-gid postdrop
    authorized_mailq_users    mailq, sendmail -bp, fastpost queue -p / -j
    authorized_flush_users    sendmail -q..., fastpost queue -f / -s / -i

Each is a string list (fastpost.mail.domain_list: names, ``!name``, ``/file``,
``type:table``; first match decides; case-insensitive) matched against the login
name of the real uid, or ``unknown`` when the uid has no password entry. Default
``static:anyone``: everyone (answered without loading the list machinery, so a plain
sendmail stays cheap). For listing and flushing, the super-user and mail_owner are
always allowed, as in Postfix; for submission nobody is (Postfix refuses root too).

    check(cfg, "submit", prog) -> None | (status, text)
    log_refusal(cfg, prog, text)   the refusal in the mail log too, as Postfix does

returns None when allowed, else the exit status and the message to print
(``User NAME(UID) is not allowed to submit mail``). A table that cannot answer is
refused with the lookup error and EX_TEMPFAIL.
"""

from __future__ import annotations

import os

#: what -> (parameter, the words after "not allowed to", root and mail_owner exempt)
ACTIONS = {
    "submit": ("authorized_submit_users", "submit mail", False),
    "mailq": ("authorized_mailq_users", "view the mail queue", True),
    "flush": ("authorized_flush_users", "flush the mail queue", True),
}

EX_TEMPFAIL = 75


def login_name(uid: int) -> str:
    """The password file's name for uid, or "unknown" (Postfix's word)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "unknown"


def allowed(cfg, what: str, uid: int | None = None) -> bool:
    """Whether the user (default: the real uid) may do ``what`` (MapRetry when a table
    cannot tell)."""
    param, _, exempt = ACTIONS[what]
    uid = os.getuid() if uid is None else uid
    value = cfg.get(param)
    if value.strip() == "static:anyone":
        return True
    name = login_name(uid)
    if exempt:
        if uid == 0:
            return True
        owner = cfg.get("mail_owner")
        if name == owner:
            return True
    from fastpost.mail.domain_list import DomainList

    full = cfg.full() if hasattr(cfg, "full") else cfg
    return DomainList.string_list(full, param).match(name)


def check(cfg, what: str, uid: int | None = None) -> tuple[int, str] | None:
    """None when allowed; else (exit status, message) for a refusal.

    The status is the caller's: sendmail exits 75, postqueue 69, postdrop 1 (Postfix's
    codes); ``check`` returns 0 for a plain refusal, EX_TEMPFAIL for a lookup failure.
    """
    if cfg.get(ACTIONS[what][0]).strip() == "static:anyone":
        return None  # the default: no table machinery to load
    from fastpost.mail.maps import MapRetry

    uid = os.getuid() if uid is None else uid
    try:
        if allowed(cfg, what, uid):
            return None
    except MapRetry as exc:
        return EX_TEMPFAIL, str(exc)  # the text names the parameter and the table
    return 0, f"User {login_name(uid)}({uid}) is not allowed to {ACTIONS[what][1]}"


def log_refusal(cfg, prog: str, text: str) -> None:
    """Log a refusal to the mail log as ``$syslog_name/PROG[PID]: fatal: TEXT``, as
    Postfix's sendmail, postdrop and postqueue do besides printing it (checked on
    Postfix 3.7 run as nobody). An unprivileged user cannot open maillog_file: the
    line goes through the postlog service (public/: reachable by the set-gid helpers
    and members of setgid_group). When neither is within reach the line is left out,
    silently, so that what the user sees is exactly Postfix's message (Postfix's own
    sendmail cannot reach public/postlog either)."""
    from fastpost.mail.config import ConfigError
    from fastpost.mail.maillog import init_logging, postlog_endpoint
    from fastpost.util import log

    try:
        maillog = cfg.get("maillog_file")
        if maillog and maillog not in ("/dev/stdout", "/dev/stderr") and \
                not os.access(maillog, os.W_OK, effective_ids=True) and \
                not os.access(postlog_endpoint(cfg), os.W_OK, effective_ids=True):
            return
        init_logging(prog, cfg)
    except ConfigError:
        return  # the command reports its configuration problems elsewhere
    log.log_at("fatal", text)
    log.close_sinks()


__all__ = ["ACTIONS", "allowed", "check", "log_refusal", "login_name"]
