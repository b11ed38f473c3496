"""smtp_generic_maps: local addresses made valid on the Internet as mail leaves by SMTP.

Postfix counterpart: src/smtp/smtp_map11.c and the header part of smtp_proto.c
(generic(5)). The smtp/lmtp agent rewrites, in what it sends and nowhere else (the
queue file, the status lines and notices keep the original addresses):

* the envelope sender (not the null sender) and every recipient (MAIL FROM, RCPT TO;
  an ORCPT keeps the recipient as it was before, as Postfix's does);
* the addresses in the primary header's address headers — From, Sender, Reply-To,
  To, Cc, Bcc, their Resent- forms, Errors-To, Return-Receipt-To,
  Disposition-Notification-To, Mail-Followup-To, Apparently-To — written back folded
  as cleanup writes rewritten headers (fastpost.daemons.cleanup.hdraddr); other
  headers, the body and the headers of attached messages are not touched (what
  Postfix 3.7 does here, checked by tests/smtpagent/test_generic.py).

A lookup is one step (no recursion), with the keys of generic(5): ``user@domain``,
then ``user`` when the domain is $myorigin, $mydestination, $inet_interfaces or
$proxy_interfaces, then ``@domain``; a result ``@otherdomain`` keeps the user part;
recipient_delimiter extensions per propagate_unmatched_extensions (``generic``).

Parameters: smtp_generic_maps (lmtp_generic_maps in LMTP mode), recipient_delimiter,
propagate_unmatched_extensions, myorigin, mydestination, inet_interfaces,
proxy_interfaces, header_address_token_limit.
Diagnostics: a table that cannot answer raises SiteError 4.3.0 ("... generic_maps
lookup error for ADDRESS") and the message is deferred; nothing is sent half-rewritten.
"""

from __future__ import annotations

from fastpost.daemons.smtp.headers import blocks as header_blocks
from fastpost.daemons.smtp.headers import name_of
from fastpost.daemons.smtp.session import SiteError
from fastpost.mail import header as H
from fastpost.util import log

__all__ = ["GenericMapper", "param_names"]


def param_names(lmtp: bool) -> tuple[str, ...]:
    return (("lmtp_" if lmtp else "smtp_") + "generic_maps", "myorigin", "mydestination",
            "recipient_delimiter", "propagate_unmatched_extensions",
            "header_address_token_limit")

_ADDRESS_HEADERS = {name for name, kind in H.KINDS.items()
                    if H.CLASS.get(kind, 0) & (H.SENDER | H.RECIPIENT)}


class GenericMapper:
    """One agent process's generic mapping (module docstring)."""

    def __init__(self, param: str, maps, *, delimiters: str, is_local, propagate: bool,
                 token_limit: int):
        self.param = param
        self.maps = maps
        self.delimiters = delimiters
        self.is_local = is_local
        self.propagate = propagate
        self.token_limit = token_limit

    @classmethod
    def from_config(cls, cfg, lmtp: bool) -> "GenericMapper | None":
        param = ("lmtp_" if lmtp else "smtp_") + "generic_maps"
        if not cfg.get(param).strip():
            return None
        from fastpost.mail import maps
        from fastpost.mail.maps import search

        base = search.local_domain_predicate(cfg)
        origin = cfg.get("myorigin").strip().lower().rstrip(".")

        def is_local(domain: str) -> bool:
            return domain.lower().rstrip(".") == origin or base(domain)

        return cls(param, maps.MapList.from_param(cfg, param),
                   delimiters=cfg.get("recipient_delimiter"), is_local=is_local,
                   propagate=search.propagates(cfg, "generic"),
                   token_limit=cfg.get_int("header_address_token_limit"))

    async def map(self, address: str) -> str:
        """The address as it goes out (itself when no entry matches)."""
        if not address:
            return address
        from fastpost.mail import maps
        from fastpost.mail.address import split_addr
        from fastpost.mail.maps import search

        try:
            value = await search.afind_address(self.maps, address, delimiters=self.delimiters,
                                               is_local=self.is_local, propagate=self.propagate)
        except maps.MapRetry as exc:
            log.warn("%s: lookup of %s: %s", self.param, log.printable(address), exc)
            raise SiteError("4.3.0", f"{self.param} lookup error for {address}") from None
        if value is None:
            return address
        first = value.split(",")[0].strip()
        if first.startswith("@"):
            first = split_addr(address)[0] + first
        return first or address

    async def headers(self, content: bytes) -> bytes:
        """``content`` (CR LF lines) with the primary header's address headers mapped."""
        from fastpost.daemons.cleanup import hdraddr

        lines = content.split(b"\r\n")
        groups, _body = header_blocks(lines)
        out: list[bytes] = []
        changed = False
        for block in groups:
            if name_of(block) not in _ADDRESS_HEADERS:
                out += block
                continue
            text = b"\n".join(block).decode("utf-8", "surrogateescape")
            label, _, value = text.partition(":")
            parsed = hdraddr.parse(value, self.token_limit)
            mapped = {a: await self.map(a) for a in set(parsed.addresses())}
            new = parsed.rewrite(lambda a: mapped.get(a, a))
            if new is None:
                out += block
                continue
            changed = True
            folded = hdraddr.format_header(label, new)
            out += [x.encode("utf-8", "surrogateescape") for x in folded.split("\n")]
        if not changed:
            return content
        # the empty line after the header and the body, as they were
        return b"\r\n".join(out + lines[sum(len(g) for g in groups):])
