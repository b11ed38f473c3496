"""local(8)'s delivery logic: aliases, .forward, :include:, mailbox, command, file.

Postfix counterpart: src/local/recipient.c, alias.c, dotforward.c, include.c, token.c,
resolve.c, indirect.c, mailbox.c, unknown.c, local_expand.c, delivered.c

LocalDelivery.deliver(request) answers one delivery request. Each queue recipient is
delivered on its own (a fresh duplicate filter, as Postfix): the expansion runs as
coroutines on the event loop (table lookups, the queue store and the committer belong
to the loop thread); every file or command operation is handed to a worker thread
(fastpost.daemons.local.ops) that switches its own file-system identity.

The switch, in Postfix's order of precedence:

 1. a Delivered-To: header already naming the recipient bounces (5.4.6 ``mail
    forwarding loop for ADDR``);
 2. aliases (alias_maps): ``user+ext`` then ``user``; an alias that names itself
    delivers to the user; more than 100 levels bounce (5.4.6 ``alias database loop
    for NAME``); an ``owner-NAME`` alias makes ``owner-NAME@$myorigin`` (or its
    expansion, expand_owner_alias) the sender of the expansion, whose members are
    then forwarded as a new message; commands and files in aliases run with the rights
    of the alias table's owner, default_privs when root owns it;
 3. destinations that are not local (any domain that is not ours) and every address
    from an :include: file or a .forward file (other than the user's own name) are
    **forwarded**: collected per (Delivered-To, sender) and committed as one new
    message each, with ``Received: by $myhostname ($mail_name) id NEWID; date`` and
    ``Delivered-To: recipient`` on top; the queue recipient is logged as ``sent
    (forwarded as NEWID)``. Local addresses from plain aliases are delivered in
    this process (``to=<member>, orig_to=<alias>``);
 4. ``~user/.forward`` (forward_path, expanded per delivery and filtered by
    forward_expansion_filter), read as the user; ignored with a warning unless it is a
    regular file owned by the user (or root) and not world-writable; an empty file
    means "deliver to the mailbox";
 5. mailbox_transport_maps, mailbox_transport (the recipient is passed to that agent),
    mailbox_command_maps, mailbox_command (run as the user, default_privs for root),
    home_mailbox (``Maildir/`` or a file), mail_spool_directory (a file, or a Maildir
    per user when it ends in ``/``);
 6. unknown users: fallback_transport_maps, fallback_transport, luser_relay, a
    missing postmaster/mailer-daemon alias (discarded with a warning), else a bounce
    5.1.1 ``unknown user: "NAME"``.

recipient_delimiter extensions are tried in aliases and .forward names and are
propagated into alias, .forward and :include: results as
propagate_unmatched_extensions says; ``owner-`` and ``-request`` names are not split
when the delimiter is ``-`` (owner_request_special).

Deviations (docs/local.md): whether an address is "local" is decided here from
mydestination / inet_interfaces / proxy_interfaces and local_transport (Postfix asks
trivial-rewrite, so transport_maps overrides for local domains are not seen);
forwarded messages are committed to the queue store by this process (there is no
cleanup daemon yet), so header_checks, canonical and virtual alias mapping are not
applied to them; owner- aliases do not redirect loop bounces (bounce_one);
regexp/pcre alias tables are not prevented from $1 substitution.

Diagnostics: warnings as Postfix words them (file has bad owner uid, is world
writable, required alias not found, ...); every recipient always gets a result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import socket
import stat
import time
from dataclasses import dataclass

from fastpost.mail import mac_expand
from fastpost.mail.agent import DeliveryPass, Message, Outcome, log_outcome, mail_date, summarize
from fastpost.mail.deliver import BOUNCED, DEFERRED, SENT, DeliveryRequest, Recipient, RecipientResult
from fastpost.mail.mailcopy import (
    COPY_DELIVERED, COPY_FROM, COPY_MBOX, COPY_ORIG_RCPT, COPY_RETURN_PATH, COPY_TOFILE,
    copy_bytes, delivered_key,
)
from fastpost.mail.maps import MapList, MapRetry
from fastpost.mail import asuser as ops
from fastpost.daemons.local.settings import (
    EXPAND_ALIAS, EXPAND_FWD, EXPAND_INCL, EXT_PROP_ALIAS, EXT_PROP_FORWARD, EXT_PROP_INCLUDE,
    HDR_CMD, HDR_FILE, HDR_FWD, LocalSettings,
)
from fastpost.daemons.local.tokens import destinations
from fastpost.util import log, privs

#: Largest .forward or :include: file read (bytes).
LIST_FILE_LIMIT = 64 << 20
#: Nesting depth at which alias and include expansion give up (Postfix: 100).
MAX_LEVEL = 100
#: Seconds a passwd entry is reused (a user deleted or changed is seen that late).
PASSWD_TTL = 5.0
_MAILER_DAEMON = "mailer-daemon"
_POSTMASTER = "postmaster"


@dataclass
class Attr:
    """Message delivery attributes; copied (never changed in place) on the way down."""

    level: int = 0
    recipient: str = ""  # the address being delivered now
    orig: str = ""  # the original recipient (X-Original-To, orig_to=)
    delivered: str = ""  # the Delivered-To: address
    sender: str = ""
    owner: str | None = None  # set: members are forwarded (owner- alias, .forward, :include:)
    exp_type: int = 0  # EXPAND_ALIAS / EXPAND_FWD / EXPAND_INCL
    exp_from: str | None = None  # the alias/user being expanded (self-reference check)
    unmatched: str | None = None  # extension to splice into expansion results
    local: str = ""
    user: str = ""
    extension: str | None = None
    domain: str | None = None
    dsn_notify: int = 0
    dsn_orcpt: str = ""
    dsn_envid: str = ""
    dsn_ret: int = 0


@dataclass
class UserAttr:
    """Whose rights a file or command delivery uses (uid 0 = nobody in particular)."""

    uid: int = 0
    gid: int = 0
    home: str | None = None
    shell: str | None = None
    logname: str | None = None


def split_local(local: str, delimiters: str, owner_request_special: bool) -> tuple[str, str | None]:
    """Split ``user+ext`` at the first delimiter character: (user, ext or None).

    A delimiter in first position does not split; with owner_request_special and ``-``
    among the delimiters, ``owner-name`` and ``name-request`` stay whole (Postfix's
    split_addr).
    """
    if not delimiters or not local:
        return local, None
    if owner_request_special and "-" in delimiters:
        if local.startswith("owner-") or (len(local) > 8 and local.endswith("-request")):
            return local, None
    for i, c in enumerate(local):
        if c in delimiters:
            if i == 0:
                return local, None
            return local[:i], local[i + 1:]
    return local, None


def biff_notify(text: str) -> None:
    """Tell comsat (the biff service, udp/512 on localhost) where new mail starts."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(text.encode("utf-8", "surrogateescape") + b"\0", ("127.0.0.1", 512))
    except OSError:
        pass  # no comsat: nothing to tell


def _user_attr(pw) -> UserAttr:
    return UserAttr(pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell, pw.pw_name)


NOTIFY_NEVER, NOTIFY_SUCCESS = 1, 2


def _drop_success(notify: int) -> int:
    return NOTIFY_NEVER if notify == NOTIFY_SUCCESS else notify & ~NOTIFY_SUCCESS


@dataclass
class Copy:
    """The delivered form of the message, made when a worker thread needs it."""

    text: bytes
    sender: str
    orig: str
    delivered: str
    flags: int

    def bytes(self) -> bytes:
        return copy_bytes(self.text, sender=self.sender, orig_rcpt=self.orig,
                          delivered=self.delivered, flags=self.flags)


@dataclass
class _ForwardGroup:
    delivered: str
    sender: str
    dsn_envid: str
    dsn_ret: int
    recipients: list  # (address, orig, dsn_orcpt, dsn_notify)


class Job:
    """The delivery of one queue recipient."""

    def __init__(self, engine: "LocalDelivery", request: DeliveryRequest, rcpt: Recipient,
                 msg: Message):
        self.engine = engine
        self.request = request
        self.rcpt = rcpt
        self.msg = msg
        self.started = time.time()
        self.outcomes: list[Outcome] = []
        self.forwards: dict[tuple[str, str], _ForwardGroup] = {}
        self._seen: set[str] = set()
        self._limit = engine.cfg.duplicate_filter_limit

    def been_here(self, key: str) -> bool:
        """Postfix's duplicate filter: True if key was seen; remember it (up to the limit)."""
        key = key.lower()
        if key in self._seen:
            return True
        if not self._limit or len(self._seen) < self._limit:
            self._seen.add(key)
        return False

    def been_here_check(self, key: str) -> bool:
        return key.lower() in self._seen

    def record(self, attr: Attr, dsn: str, text: str, status: str | None = None) -> int:
        """Log and keep one outcome for the current address; return 1 if deferred."""
        status = status or (SENT if dsn[0] == "2" else DEFERRED if dsn[0] == "4" else BOUNCED)
        out = Outcome(attr.recipient, attr.orig, status, dsn, text, relay=self.engine.cfg.service)
        self.outcomes.append(out)
        log_outcome(self.request, self.rcpt.offset, out, started=self.started,
                    resolution=self.engine.cfg.resolution)
        return 1 if status == DEFERRED else 0

    def forward_append(self, attr: Attr) -> None:
        key = (attr.delivered, attr.sender)
        group = self.forwards.get(key)
        if group is None:
            group = self.forwards[key] = _ForwardGroup(attr.delivered, attr.sender,
                                                       attr.dsn_envid, attr.dsn_ret, [])
        group.recipients.append((attr.recipient, attr.orig, attr.dsn_orcpt, attr.dsn_notify))


class LocalDelivery:
    """One per local process: settings, the message source, helpers for delivery."""

    def __init__(self, cfg: LocalSettings, source, committer_factory, pool,
                 queue_directory: str):
        self.cfg = cfg
        self.source = source
        self.committer_factory = committer_factory  # async () -> Committer
        self.pool = pool
        self.passer = DeliveryPass(queue_directory)
        self.table_owner_cache: dict[str, int] = {}
        self.pw_cache: dict = {}

    # -- plumbing -----------------------------------------------------------------------

    async def blocking(self, fn, *args, **kwargs):
        """Run fn in a worker thread; Copy arguments are made there (off the loop)."""
        def call():
            a = [x.bytes() if isinstance(x, Copy) else x for x in args]
            kw = {k: v.bytes() if isinstance(v, Copy) else v for k, v in kwargs.items()}
            return fn(*a, **kw)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, call)

    async def _pw(self, key, lookup):
        """A passwd entry, from a cache kept PASSWD_TTL seconds (lookups may block on
        NSS, so a miss is looked up in a worker thread)."""
        now = time.monotonic()
        hit = self.pw_cache.get(key)
        if hit is not None and now - hit[0] < PASSWD_TTL:
            return hit[1]

        def find():
            try:
                return lookup()
            except KeyError:
                return None
        entry = await self.blocking(find)
        if len(self.pw_cache) > 10000:
            self.pw_cache.clear()
        self.pw_cache[key] = (now, entry)
        return entry

    async def getpwnam(self, name: str):
        return await self._pw(("n", name), lambda: pwd.getpwnam(name))

    async def getpwuid(self, uid: int):
        return await self._pw(("u", uid), lambda: pwd.getpwuid(uid))

    def canonical(self, address: str) -> str:
        """Address in canonical form: ``user`` gets ``@$myorigin``; a trailing dot goes."""
        local, at, domain = address.rpartition("@")
        if not at:
            return f"{address}@{self.cfg.myorigin}"
        return f"{local}@{domain.rstrip('.')}"

    def split_extension(self, local: str) -> tuple[str, str | None]:
        return split_local(local, self.cfg.delimiters, self.cfg.owner_request_special)

    # -- the request ---------------------------------------------------------------------

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        try:
            msg = self.source.load(request.queue_id)
        except Exception as exc:  # QueueError, CorruptMessage: nothing can be delivered now
            log.warn("%s: cannot read the message: %s", request.queue_id, log.printable(str(exc)))
            return self._all(request, "4.3.0", "error reading message: queue file unreadable")
        results = []
        for rcpt in request.recipients:
            job = Job(self, request, rcpt, msg)
            attr = Attr(recipient=rcpt.address,
                        orig=rcpt.orig or (rcpt.address if self.cfg.original_recipient else ""),
                        sender=request.sender, dsn_notify=rcpt.dsn_notify,
                        dsn_orcpt=rcpt.dsn_orcpt, dsn_envid=request.dsn_envid,
                        dsn_ret=request.dsn_ret)
            try:
                status = await self.deliver_recipient(job, attr, UserAttr())
                status |= await self.forward_finish(job, attr, status)
            except Exception as exc:  # noqa: BLE001 - one bad recipient must not sink the rest
                log.warn("%s: local delivery error for %s: %s: %s", request.queue_id,
                         log.printable(rcpt.address), type(exc).__name__, log.printable(str(exc)))
                job.record(attr, "4.3.0", "local delivery temporarily failed")
            results.append(summarize(rcpt.offset, job.outcomes, self.cfg.service))
        return results

    def _all(self, request, dsn, text):
        started = time.time()
        out = []
        for rcpt in request.recipients:
            o = Outcome(rcpt.address, rcpt.orig, DEFERRED, dsn, text, relay=self.cfg.service)
            log_outcome(request, rcpt.offset, o, started=started)
            out.append(RecipientResult(rcpt.offset, DEFERRED, dsn, text, self.cfg.service))
        return out

    # -- recipient.c -----------------------------------------------------------------------

    async def deliver_recipient(self, job: Job, attr: Attr, usr: UserAttr) -> int:
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if job.been_here(f"recipient {attr.level} {attr.recipient}"):
            return 0
        if delivered_key(attr.recipient) in job.msg.delivered:
            return job.record(attr, "5.4.6", f"mail forwarding loop for {attr.recipient}")
        if not attr.delivered:
            attr.delivered = attr.recipient
        local, at, domain = attr.recipient.lower().rpartition("@")
        if not at:
            log.warn("no @ in recipient address: %s", log.printable(attr.recipient))
            local, domain = attr.recipient.lower(), None
        attr.local, attr.domain = local, domain
        attr.user, attr.extension = self.split_extension(local)
        if attr.extension is not None and "/" in attr.extension:
            log.warn("%s: address with illegal extension: %s", job.request.queue_id,
                     log.printable(local))
            attr.extension = None
        attr.unmatched = attr.extension
        if not attr.user:
            return job.record(attr, "5.1.3", f"null username in {attr.recipient}")
        return await self.deliver_switch(job, attr, usr)

    async def deliver_switch(self, job: Job, attr: Attr, usr: UserAttr) -> int:
        attr = dataclasses.replace(attr, level=attr.level + 1, unmatched=None)
        handled, status = await self.deliver_alias(job, attr, usr, attr.local)
        if handled:
            return status
        if attr.extension is not None:
            if self.cfg.ext_prop & EXT_PROP_ALIAS:
                attr.unmatched = attr.extension
            handled, status = await self.deliver_alias(job, attr, usr, attr.user)
            if handled:
                return status
            attr.unmatched = attr.extension
        if attr.owner is not None and attr.owner.lower() != attr.user.lower():
            return self.deliver_indirect(job, attr)
        if attr.exp_type == EXPAND_INCL:
            return self.deliver_indirect(job, attr)
        if self.cfg.require_home_directory:
            pw = await self.getpwnam(attr.user)
            if pw is not None:
                st, why = await self.blocking(ops.stat_as, pw.pw_dir, ops.Ids(pw.pw_uid, pw.pw_gid))
                if st is None:
                    return job.record(attr, "4.3.0", f"cannot access home directory {pw.pw_dir}: {why}")
        found, status = await self.deliver_dotforward(job, attr, usr)
        if not found:
            found, status = await self.deliver_mailbox(job, attr, usr)
            if not found:
                status = await self.deliver_unknown(job, attr, usr)
        return status

    # -- alias.c ------------------------------------------------------------------------

    async def table_owner(self, m) -> int:
        """uid of the file behind an alias table (0 for root or for non-file tables)."""
        spec = m.spec
        cached = self.table_owner_cache.get(spec)
        if cached is not None:
            return cached
        type_, _, name = spec.partition(":")
        if type_ == "proxy":
            type_, _, name = name.partition(":")
        path = None
        if type_ in ("hash", "btree", "lmdb"):
            path = name + ".lmdb"
        elif type_ in ("texthash", "regexp", "pcre", "cidr"):
            path = name
        uid = 0
        if path:
            try:
                uid = os.stat(path).st_uid
            except OSError:
                uid = 0
        self.table_owner_cache[spec] = uid
        return uid

    async def _alias_lookup(self, name: str) -> str | None:
        for m in self.cfg.alias_maps.maps:
            value = await m.aget(name)
            if value is not None:
                return value
        return None

    async def deliver_alias(self, job: Job, attr: Attr, usr: UserAttr, name: str) -> tuple[bool, int]:
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if attr.exp_from is not None and attr.exp_from.lower() == name.lower():
            return False, 0
        if attr.level > MAX_LEVEL:
            log.warn("alias database loop for %s", log.printable(name))
            return True, job.record(attr, "5.4.6", f"alias database loop for {name}")
        attr.exp_from = name
        for m in self.cfg.alias_maps.maps:
            try:
                value = await m.aget(name)
            except MapRetry as exc:
                log.warn("%s: alias lookup of %s: %s", job.request.queue_id, log.printable(name),
                         log.printable(str(exc)))
                return True, job.record(attr, "4.3.0", "alias database unavailable")
            if value is None:
                continue
            attr.exp_type = EXPAND_ALIAS
            owner_uid = await self.table_owner(m)
            if owner_uid == 0:
                usr = UserAttr()
            else:
                pw = await self.getpwuid(owner_uid)
                if pw is None:
                    log.warn("cannot find alias database owner for %s", m.spec)
                    return True, job.record(attr, "4.3.0", "cannot find alias database owner")
                usr = _user_attr(pw)
            canon_owner = None
            if self.cfg.owner_request_special:
                owner_name = f"owner-{name}"
                try:
                    owner_rhs = await self._alias_lookup(owner_name)
                except MapRetry:
                    return True, job.record(attr, "4.3.0", "alias database unavailable")
                if owner_rhs is not None:
                    target = owner_rhs if self.cfg.expand_owner_alias else owner_name
                    first = destinations(target)
                    canon_owner = self.canonical(first[0] if first else target)
                    attr.owner = canon_owner
                    attr.sender = canon_owner
                elif self.cfg.reset_owner_alias:
                    attr.owner = None
            if not self.cfg.frozen_delivered_to:
                attr.delivered = attr.recipient
            saved_notify = attr.dsn_notify
            attr.dsn_notify = _drop_success(saved_notify)
            if canon_owner is not None:
                attr.dsn_envid, attr.dsn_ret, attr.dsn_orcpt, attr.orig = "", 0, "", ""
            count, status = await self.deliver_token_string(job, attr, usr, value)
            if count < 1:
                log.warn("no recipient in alias lookup result for %s", log.printable(name))
                status = job.record(attr, "4.3.0", "alias database unavailable")
            return True, status
        return False, 0

    # -- token.c ------------------------------------------------------------------------

    async def deliver_token_string(self, job, attr, usr, text: str) -> tuple[int, int]:
        count = status = 0
        for dest in destinations(text):
            count += 1
            status |= await self.deliver_token(job, attr, usr, dest)
        return count, status

    async def deliver_token_stream(self, job, attr, usr, data: bytes) -> tuple[int, int]:
        count = status = 0
        limit = max(1, self.cfg.line_limit)
        for raw in data.split(b"\n"):
            for start in range(0, max(1, len(raw)), limit):
                line = raw[start:start + limit].decode("utf-8", "surrogateescape")
                if line.startswith("#"):
                    continue
                n, status = await self.deliver_token_string(job, attr, usr, line)
                count += n
                if status:
                    return count, status
        return count, status

    async def deliver_token(self, job, attr, usr, dest: str) -> int:
        if dest.startswith("/"):
            return await self.deliver_file(job, attr, usr, dest)
        if dest.startswith("~"):
            if dest[1:2] != "/":
                log.warn("bad home directory syntax for: %s", log.printable(dest))
                return job.record(attr, "5.3.5", "mail system configuration error")
            if usr.home is None:
                log.warn("unknown home directory for: %s", log.printable(dest))
                return job.record(attr, "5.3.5", "mail system configuration error")
            home = "" if usr.home == "/" else usr.home
            return await self.deliver_file(job, attr, usr, home + dest[1:])
        if dest.startswith("|"):
            if not self.cfg.allow_commands & attr.exp_type:
                return job.record(attr, "5.7.1", "mail to command is restricted")
            return await self.deliver_command(job, attr, usr, dest[1:])
        if dest.lower().startswith(":include:"):
            return await self.deliver_include(job, attr, usr, dest[9:])
        return await self.deliver_resolve(job, attr, usr, dest)

    # -- resolve.c / indirect.c --------------------------------------------------------------

    async def deliver_resolve(self, job, attr, usr, address: str) -> int:
        attr = dataclasses.replace(attr, level=attr.level + 1)
        address = self.canonical(address)
        local, _, domain = address.rpartition("@")
        if not local or not domain or any(c in domain for c in " \t\r\n,<>;"):
            return job.record(attr, "5.1.3", f"bad recipient address syntax: {address}")
        if attr.unmatched and self.cfg.delimiters:
            address = f"{local}{self.cfg.delimiters[0]}{attr.unmatched}@{domain}"
        attr.recipient = address
        if self.cfg.is_local(domain) and self.cfg.local_transport == self.cfg.service:
            return await self.deliver_recipient(job, attr, usr)
        return self.deliver_indirect(job, attr)

    def deliver_indirect(self, job: Job, attr: Attr) -> int:
        if job.been_here(f"indirect {attr.recipient}"):
            return 0
        job.forward_append(attr)
        return 0

    async def forward_finish(self, job: Job, top: Attr, status: int) -> int:
        """Commit the forwarded messages of one queue recipient (forward.c)."""
        if not job.forwards:
            return 0
        if status:  # something deferred: the whole recipient is tried again later
            return 0
        try:
            committer = await self.committer_factory()
        except Exception as exc:  # noqa: BLE001
            log.warn("%s: cannot open the queue for forwarding: %s", job.request.queue_id, exc)
            return job.record(top, "4.3.0", "unable to forward message")
        failed = 0
        for group in job.forwards.values():
            try:
                qid = await self._commit_forward(committer, job, group)
            except Exception as exc:  # noqa: BLE001 - InsufficientStorage, OSError
                log.warn("%s: forwarding failed: %s", job.request.queue_id, log.printable(str(exc)))
                failed |= job.record(top, "4.3.0", "unable to forward message")
                continue
            job.record(top, "2.0.0", f"forwarded as {qid}")
        return failed

    async def _commit_forward(self, committer, job: Job, group: _ForwardGroup) -> str:
        cfg = self.cfg
        request = job.request
        now = time.time()
        b = committer.builder()
        b.time(now)
        b.set_sender(group.sender)
        if group.dsn_ret:
            b.attr("dsn_ret", str(group.dsn_ret))
        if group.dsn_envid:
            b.attr("dsn_envid", group.dsn_envid)
        client = request.client or {}
        for key, name in (("name", "log_client_name"), ("addr", "log_client_address"),
                          ("port", "log_client_port"), ("proto", "log_protocol_name"),
                          ("helo", "log_helo_name"), ("sasl_method", "sasl_method"),
                          ("sasl_username", "sasl_username"), ("sasl_sender", "sasl_sender")):
            value = client.get(key)
            if value:
                b.attr(name, str(value))
        context = job.msg.attrs.get("rewrite_context")
        if context:
            b.attr("rewrite_context", context)
        for address, orig, orcpt, notify in group.recipients:
            b.add_recipient(address, orig or None, dsn_orcpt=orcpt or None, dsn_notify=notify)
        head = (f"Received: by {cfg.myhostname} ({cfg.mail_name})\n"
                f"\tid {b.queue_id}; {mail_date(now)}\n")
        if cfg.header_mask & HDR_FWD:
            head += f"Delivered-To: {group.delivered.lower()}\n"
        await b.write(head.encode("utf-8", "surrogateescape"))
        await b.write(job.msg.text)
        return await committer.commit(b)

    # -- dotforward.c -----------------------------------------------------------------------

    def _lookup(self, attr: Attr, usr: UserAttr):
        def lookup(name: str):
            if name == "user":
                return attr.user
            if name == "home":
                return usr.home
            if name == "shell":
                return usr.shell
            if name == "domain":
                return attr.domain
            if name in ("local", "mailbox"):
                return attr.local
            if name == "recipient":
                return attr.recipient
            if name == "extension":
                return attr.extension
            if name == "recipient_delimiter":
                c = attr.local[len(attr.user):len(attr.user) + 1]
                return c or None
            return None
        return lookup

    async def deliver_dotforward(self, job, attr: Attr, usr: UserAttr) -> tuple[bool, int]:
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if not self.cfg.forward_path.strip():
            return False, 0
        pw = await self.getpwnam(attr.user)
        if pw is None:
            return False, 0
        if not self.cfg.frozen_delivered_to:
            attr.delivered = attr.recipient
        usr = _user_attr(pw)
        ids = ops.Ids(usr.uid, usr.gid)
        attr.exp_type = EXPAND_FWD
        attr.owner = attr.user
        path = None
        st = None
        for lhs in self.cfg.forward_path.replace(",", " ").split():
            try:
                exp = mac_expand.expand(lhs, self._lookup(attr, usr), self.cfg.forward_filter)
            except mac_expand.MacError:
                continue
            if exp.undefined:
                continue
            st = await self.blocking(ops.lstat_as, exp.text, ids)
            if st is not None:
                path = exp.text
                if "extension" in exp.used or not self.cfg.ext_prop & EXT_PROP_FORWARD:
                    attr.unmatched = None
                break
        if path is None:
            return False, 0
        found, status = False, 0
        if not job.been_here(f"forward {path}"):
            attr.exp_from = attr.local
            if not stat.S_ISREG(st.st_mode):
                log.warn("file %s is not a regular file", log.printable(path))
            elif st.st_uid not in (0, usr.uid):
                log.warn("file %s has bad owner uid %d", log.printable(path), st.st_uid)
            elif st.st_mode & 0o002:
                log.warn("file %s is world writable", log.printable(path))
            else:
                res = await self.blocking(ops.read_list, path, ids, LIST_FILE_LIMIT)
                if not res.ok:
                    log.warn("cannot open file %s: %s", log.printable(path), res.text)
                else:
                    saved = attr.dsn_notify
                    attr.dsn_notify = _drop_success(saved)
                    count, status = await self.deliver_token_stream(job, attr, usr, res.data)
                    if count > 0:
                        found = True
                        job.been_here(f"forward-done {path}")
        elif job.been_here_check(f"forward-done {path}"):
            found = True
        return found, status

    # -- include.c ---------------------------------------------------------------------------

    async def deliver_include(self, job, attr: Attr, usr: UserAttr, path: str) -> int:
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if attr.level > MAX_LEVEL:
            log.warn(":include: nesting limit exceeded for %s", log.printable(path))
            return job.record(attr, "5.4.6", ":include: nesting limit exceeded")
        if job.been_here(f"include {usr.uid} {path}"):
            return 0
        attr.exp_from = attr.local
        config_error = "mail system configuration error"
        if not path.startswith("/"):
            log.warn(":include:%s uses a relative path", log.printable(path))
            return job.record(attr, "5.3.5", config_error)
        ids = ops.Ids(usr.uid, usr.gid)
        st, why = await self.blocking(ops.stat_as, path, ids)
        if st is None:
            log.warn("unable to lookup :include: file %s: %s", log.printable(path), why)
            return job.record(attr, "5.3.5", config_error)
        if not stat.S_ISREG(st.st_mode):
            log.warn(":include: file %s is not a regular file", log.printable(path))
            return job.record(attr, "5.3.5", config_error)
        if st.st_mode & stat.S_IWOTH:
            log.warn(":include: file %s is world writable", log.printable(path))
            return job.record(attr, "5.3.5", config_error)
        attr.exp_type = EXPAND_INCL
        if usr.uid == 0:
            pw = await self.getpwuid(st.st_uid)
            if pw is None:
                log.warn("cannot find username for uid %d", st.st_uid)
                log.warn("%s: cannot find :include: file owner username", log.printable(path))
                return job.record(attr, "4.3.5", config_error)
            if pw.pw_uid != 0:
                usr = _user_attr(pw)
                ids = ops.Ids(usr.uid, usr.gid)
        if attr.owner is None:
            attr.owner = attr.recipient
        res = await self.blocking(ops.read_list, path, ids, LIST_FILE_LIMIT)
        if not res.ok:
            log.warn("cannot open include file %s: %s", log.printable(path), res.text)
            return job.record(attr, "5.3.5", config_error)
        if not self.cfg.ext_prop & EXT_PROP_INCLUDE:
            attr.unmatched = None
        _, status = await self.deliver_token_stream(job, attr, usr, res.data)
        return status

    # -- mailbox.c ------------------------------------------------------------------------

    async def _transport_lookup(self, maps: MapList | None, key: str) -> str | None:
        if maps is None:
            return None
        for m in maps.maps:
            value = await m.aget(key)
            if value is not None:
                return value
        return None

    async def deliver_pass(self, job: Job, attr: Attr, spec: str) -> int:
        rcpt = Recipient(job.rcpt.offset, attr.recipient, attr.orig, attr.dsn_notify, attr.dsn_orcpt)
        outcome = await self.passer.send(spec.strip(), job.request, rcpt)
        job.outcomes.append(outcome)
        if outcome.logged:  # the other agent logs what it did; a failure to reach it is ours
            log_outcome(job.request, job.rcpt.offset, outcome, started=job.started,
                        resolution=self.cfg.resolution)
        return 1 if outcome.deferred else 0

    async def deliver_mailbox(self, job, attr: Attr, usr: UserAttr) -> tuple[bool, int]:
        cfg = self.cfg
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if job.been_here(f"mailbox {attr.local}"):
            return True, 0
        try:
            transport = await self._transport_lookup(cfg.mailbox_transport_maps, attr.user)
        except MapRetry:
            return True, job.record(attr, "4.3.0", "table lookup failure")
        if transport:
            return True, await self.deliver_pass(job, attr, transport)
        if cfg.mailbox_transport:
            return True, await self.deliver_pass(job, attr, cfg.mailbox_transport)
        pw = await self.getpwnam(attr.user)
        if pw is None:
            return False, 0
        usr = _user_attr(pw)
        try:
            command = await self._transport_lookup(cfg.mailbox_command_maps, attr.user)
        except MapRetry:
            return True, job.record(attr, "4.3.0", "table lookup failure")
        if command:
            return True, await self.deliver_command(job, attr, usr, command)
        if cfg.mailbox_command:
            return True, await self.deliver_command(job, attr, usr, cfg.mailbox_command)
        if cfg.home_mailbox.endswith("/"):
            return True, await self.deliver_maildir(job, attr, usr, f"{usr.home}/{cfg.home_mailbox}")
        if cfg.mail_spool_directory.endswith("/"):
            return True, await self.deliver_maildir(
                job, attr, usr, f"{cfg.mail_spool_directory}{attr.user}/")
        return True, await self.deliver_mailbox_file(job, attr, usr)

    async def deliver_mailbox_file(self, job, attr: Attr, usr: UserAttr) -> int:
        cfg = self.cfg
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if not cfg.frozen_delivered_to:
            attr.delivered = attr.recipient
        if cfg.home_mailbox:
            spool_dir = None
            mailbox = f"{usr.home}/{cfg.home_mailbox}"
        else:
            spool_dir = cfg.mail_spool_directory.rstrip("/") or "/"
            mailbox = f"{spool_dir}/{attr.user}"
        if not privs.privileged():  # one-user instance: every mailbox is the running user's
            usr = dataclasses.replace(usr, uid=os.geteuid(), gid=os.getegid())
        spool = ops.Ids(usr.uid, usr.gid)
        if spool_dir is not None and privs.privileged():
            try:
                st = os.stat(spool_dir)
                if not st.st_mode & stat.S_IWOTH:
                    spool = ops.Ids(usr.uid, st.st_gid) if st.st_mode & stat.S_IWGRP else ops.Ids(0, 0)
            except OSError:
                pass
        chown = None if spool.uid == usr.uid else (usr.uid, usr.gid)
        flags = COPY_MBOX if cfg.header_mask & HDR_FILE else COPY_MBOX & ~COPY_DELIVERED
        data = Copy(job.msg.text, attr.sender, attr.orig, attr.delivered, flags)
        res = await self.blocking(
            ops.mailbox_file, mailbox, data, spool=spool, user=ops.Ids(usr.uid, usr.gid),
            chown=chown, locks=self._locks(), size_limit=cfg.mailbox_size_limit,
            strict_owner=cfg.strict_mailbox_ownership)
        for w in res.warnings:
            log.warn("%s", log.printable(w))
        if not res.ok:
            return job.record(attr, res.dsn,
                              f"cannot update mailbox {mailbox} for user {attr.user}. {res.text}")
        if cfg.biff:
            biff_notify(f"{usr.logname or attr.user}@{res.data}")
        return job.record(attr, "2.0.0", "delivered to mailbox")

    def _locks(self, extra: int = 0) -> ops.LockPolicy:
        cfg = self.cfg
        return ops.LockPolicy(cfg.lock_mask | extra, cfg.lock_attempts, cfg.lock_delay,
                              cfg.stale_lock_time)

    # -- maildir.c ---------------------------------------------------------------------------

    async def deliver_maildir(self, job, attr: Attr, usr: UserAttr, path: str) -> int:
        cfg = self.cfg
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if not cfg.frozen_delivered_to:
            attr.delivered = attr.recipient
        flags = COPY_TOFILE | COPY_RETURN_PATH | COPY_ORIG_RCPT
        if cfg.header_mask & HDR_FILE:
            flags |= COPY_DELIVERED
        data = Copy(job.msg.text, attr.sender, attr.orig, attr.delivered, flags)
        res = await self.blocking(ops.maildir, path, data, user=ops.Ids(usr.uid, usr.gid),
                                  size_limit=cfg.mailbox_size_limit)
        if not res.ok:
            if res.errno == 13:  # EACCES
                log.warn("maildir access problem for UID/GID=%d/%d: %s", usr.uid, usr.gid,
                         log.printable(res.text))
                log.warn("perhaps you need to create the maildirs in advance")
            return job.record(attr, res.dsn, f"maildir delivery failed: {res.text}")
        return job.record(attr, "2.0.0", "delivered to maildir")

    # -- file.c --------------------------------------------------------------------------------

    def _default_privs(self, usr: UserAttr) -> UserAttr:
        if usr.uid == 0 or usr.gid == 0:
            return dataclasses.replace(usr, uid=usr.uid or self.cfg.default_uid,
                                       gid=usr.gid or self.cfg.default_gid)
        return usr

    async def deliver_file(self, job, attr: Attr, usr: UserAttr, path: str) -> int:
        cfg = self.cfg
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if job.been_here(f"file {usr.uid} {path}"):
            return 0
        if not cfg.allow_files & attr.exp_type:
            return job.record(attr, "5.7.1", "mail to file is restricted")
        usr = self._default_privs(usr)
        if path.endswith("/"):
            return await self.deliver_maildir(job, attr, usr, path)
        flags = COPY_MBOX if cfg.header_mask & HDR_FILE else COPY_MBOX & ~COPY_DELIVERED
        data = Copy(job.msg.text, attr.sender, attr.orig, attr.delivered, flags)
        res = await self.blocking(ops.file, path, data, user=ops.Ids(usr.uid, usr.gid),
                                  locks=self._locks(), size_limit=cfg.mailbox_size_limit)
        for w in res.warnings:
            log.warn("%s", log.printable(w))
        if not res.ok:
            return job.record(attr, res.dsn, f"cannot append message to file {path}: {res.text}")
        return job.record(attr, "2.0.0", f"delivered to file: {path}")

    # -- command.c ------------------------------------------------------------------------------

    async def deliver_command(self, job, attr: Attr, usr: UserAttr, command: str) -> int:
        cfg = self.cfg
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if job.been_here(f"command {attr.user}:{usr.uid} {command}"):
            return 0
        usr = self._default_privs(usr)
        flags = COPY_FROM | COPY_RETURN_PATH | COPY_ORIG_RCPT
        if cfg.header_mask & HDR_CMD:
            flags |= COPY_DELIVERED
        env = {}
        if usr.home:
            env["HOME"] = usr.home
        env.update(LOGNAME=attr.user, USER=attr.user, SENDER=attr.sender,
                   RECIPIENT=attr.recipient, LOCAL=attr.local)
        if usr.shell:
            env["SHELL"] = usr.shell
        if attr.domain:
            env["DOMAIN"] = attr.domain
        if attr.extension is not None:
            env["EXTENSION"] = attr.extension
        if attr.orig:
            env["ORIGINAL_RECIPIENT"] = attr.orig
        client = job.request.client or {}
        for key, name in (("name", "CLIENT_HOSTNAME"), ("addr", "CLIENT_ADDRESS"),
                          ("helo", "CLIENT_HELO"), ("proto", "CLIENT_PROTOCOL"),
                          ("sasl_method", "SASL_METHOD"), ("sasl_sender", "SASL_SENDER"),
                          ("sasl_username", "SASL_USERNAME")):
            if client.get(key):
                env[name] = str(client[key])
        allowed = cfg.command_filter
        env = {k: "".join(c if c in allowed else "_" for c in v) for k, v in env.items()}
        cwd = None
        if cfg.exec_directory:
            try:
                exp = mac_expand.expand(cfg.exec_directory, self._lookup(attr, usr), cfg.exec_filter)
            except mac_expand.MacError:
                log.warn("bad parameter value syntax for command_execution_directory: %s",
                         log.printable(cfg.exec_directory))
                return job.record(attr, "4.3.5", "mail system configuration error")
            cwd = exp.text or None
            if cwd:
                why = await self.blocking(ops.directory_usable, cwd, ops.Ids(usr.uid, usr.gid))
                if why:
                    text = f"{cfg.service}: fatal: chdir {cwd}: {why}"
                    return job.record(attr, "4.3.0", f"temporary failure. Command output: {text} ")
        data = Copy(job.msg.text, attr.sender, attr.orig, attr.delivered, flags)
        res = await self.blocking(
            ops.command, data=data, command=command, uid=usr.uid, gid=usr.gid, env=env,
            export=cfg.export_environment, shell=cfg.local_command_shell, cwd=cwd,
            time_limit=cfg.command_time_limit, tag=cfg.service)
        for w in res.warnings:
            log.warn("%s", w)
        if res.status == "ok":
            return job.record(attr, "2.0.0", f"delivered to command: {command}")
        return job.record(attr, res.dsn, res.text)

    # -- unknown.c ------------------------------------------------------------------------------

    async def deliver_unknown(self, job, attr: Attr, usr: UserAttr) -> int:
        cfg = self.cfg
        attr = dataclasses.replace(attr, level=attr.level + 1)
        if job.been_here(f"deliver_unknown {attr.local}"):
            return 0
        try:
            transport = await self._transport_lookup(cfg.fallback_transport_maps, attr.user)
        except MapRetry:
            return job.record(attr, "4.3.0", "table lookup failure")
        if transport:
            return await self.deliver_pass(job, attr, transport)
        if cfg.fallback_transport:
            return await self.deliver_pass(job, attr, cfg.fallback_transport)
        if cfg.luser_relay:
            attr.unmatched = None
            try:
                exp = mac_expand.expand(cfg.luser_relay, self._lookup(attr, usr))
            except mac_expand.MacError:
                log.warn("bad parameter value syntax for luser_relay: %s",
                         log.printable(cfg.luser_relay))
                return job.record(attr, "4.3.5", "mail system configuration error")
            return await self.deliver_resolve(job, attr, usr, exp.text)
        if attr.user.lower() in (_MAILER_DAEMON, _POSTMASTER):
            log.warn("required alias not found: %s", log.printable(attr.user))
            return job.record(attr, "2.0.0", "discarded")
        return job.record(attr, "5.1.1", f'unknown user: "{attr.user}"')

