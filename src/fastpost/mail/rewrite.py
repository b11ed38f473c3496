"""Address rewriting to standard form: trivial-rewrite's ``rewrite`` request.

Postfix counterpart: src/trivial-rewrite/rewrite.c (and rewrite_clnt_internal() in
src/global/rewrite_clnt.c, whose calling convention this follows).

Addresses go in and come out in *internal* form (local part unquoted). Rewriting in the
``local`` context (what cleanup does for locally submitted mail and for envelopes):

  1. ``""`` stays empty; a lone ``@`` becomes ``""``.
  2. A source route is dropped (``@a:user`` -> ``user``) only when it is one on the
     wire: in internal form ``@a,@b:user@c`` is the local part ``@a,@b:user`` of domain
     ``c``, which is quoted before rewriting (as Postfix's rewrite_clnt_internal does),
     so it stays as it is.
  3. An address without ``@``:
       ``swap_bangpath``       ``site!user`` -> ``user@site`` (at the first ``!``),
       else ``allow_percent_hack``  ``user%site`` -> ``user@site`` (at the last ``%``),
       else ``append_at_myorigin``  ``user`` -> ``user@$myorigin``.
     A local part that would need quotes on the wire (``"a b!c"``) is one opaque token:
     no ``!`` or ``%`` inside it is looked at, as with Postfix's quoted strings.
  4. ``append_dot_mydomain``: a domain without a dot (and not an address literal) gets
     ``.$mydomain``.
  5. One trailing dot of the domain is removed (``user@example.com.``); a name ending in
     two dots is left alone (resolve() will call it malformed).

The ``remote`` context does the same with ``remote_header_rewrite_domain`` in place of
both ``myorigin`` and ``mydomain``; when that parameter is empty nothing is appended
(steps 2, 3 without the origin, and 5 still apply).

``canonicalize()`` is the shared core; resolve.py uses it with routes kept and with the
visibility rule of ``resolve_dequoted_address``.

Parameters: myorigin, mydomain, append_at_myorigin, append_dot_mydomain, swap_bangpath,
allow_percent_hack, remote_header_rewrite_domain.
Diagnostics: ValueError for an unknown context (a caller's bug). Rewriting never fails
on a malformed address: it is returned as well as it can be, and resolve() judges it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastpost.mail.address import needs_quoting

LOCAL = "local"
REMOTE = "remote"
CONTEXTS = (LOCAL, REMOTE)


@dataclass(frozen=True, slots=True)
class RewriteRules:
    """What one context appends and which address operators it honours."""

    origin: str  # appended to a bare local part ("" = nothing)
    domain: str  # appended after a dot to a dot-less domain ("" = nothing)
    bang: bool  # swap_bangpath
    percent: bool  # allow_percent_hack


def split_route(address: str) -> tuple[str, str]:
    """Split ``@a,@b:user@c`` into (``@a,@b``, ``user@c``); ("", address) without a route."""
    if address.startswith("@"):
        colon = address.find(":")
        if colon > 0:
            return address[:colon], address[colon + 1:]
    return "", address


def canonicalize(address: str, rules: RewriteRules, *, opaque_quoted: bool = True) -> str:
    """Steps 3-5 of the module docstring for one address without a source route."""
    at = address.rfind("@")
    if at < 0:
        local, domain, has_at = address, "", False
    else:
        local, domain, has_at = address[:at], address[at + 1:], True
    if not has_at:
        visible = not (opaque_quoted and needs_quoting(local))
        if visible and rules.bang and "!" in local:
            domain, _, local = local.partition("!")
            has_at = True
        elif visible and rules.percent and "%" in local:
            local, _, domain = local.rpartition("%")
            has_at = True
        elif rules.origin:
            domain, has_at = rules.origin, True
    if not has_at:
        return local
    if domain and rules.domain and "." not in domain and not domain.startswith("["):
        domain = f"{domain}.{rules.domain}"
    if domain.endswith(".") and not domain.endswith("..") and len(domain) > 1:
        domain = domain[:-1]
    return f"{local}@{domain}"


def rewrites_to_itself(address: str) -> bool:
    """True for an address that rewriting returns unchanged, in either context and
    under any configuration: it has an ``@`` (so steps 3 do not apply) and no source
    route to drop (step 2), and its domain holds a dot and does not end in one (steps
    4 and 5). ``user@example.com`` is such an address; ``user``, ``user@host``,
    ``user@example.com.`` and ``@a:user`` are not. A client may answer these itself
    (rewrite_clnt.RewriteClient): trivial-rewrite would answer the same."""
    at = address.rfind("@")
    if at <= 0 or address[0] == "@":
        return False
    dot = address.find(".", at + 1)
    return dot > 0 and address[-1] != "."


class Rewriter:
    """The rewrite request, with the rules of both contexts read from a Config once."""

    def __init__(self, cfg):
        myorigin = cfg.get("myorigin").strip()
        mydomain = cfg.get("mydomain").strip()
        remote = cfg.get("remote_header_rewrite_domain").strip()
        bang = cfg.get_bool("swap_bangpath")
        percent = cfg.get_bool("allow_percent_hack")
        at_origin = cfg.get_bool("append_at_myorigin")
        dot_domain = cfg.get("append_dot_mydomain").strip().lower() == "yes"
        self.rules = {
            LOCAL: RewriteRules(myorigin if at_origin else "", mydomain if dot_domain else "",
                                bang, percent),
            REMOTE: RewriteRules(remote if at_origin else "", remote if dot_domain else "",
                                 bang, percent),
        }

    def rewrite(self, context: str, address: str) -> str:
        """Return the address rewritten to standard form (internal form in and out)."""
        rules = self.rules.get(context)
        if rules is None:
            raise ValueError(f"unknown address rewriting context: {context!r}")
        if address in ("", "@"):
            return ""
        if address.startswith("@") and address.count("@") == 1:
            _route, address = split_route(address)
        return canonicalize(address, rules)


__all__ = ["CONTEXTS", "LOCAL", "REMOTE", "RewriteRules", "Rewriter", "canonicalize",
           "rewrites_to_itself", "split_route"]
