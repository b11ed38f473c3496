"""``ldap:`` tables: LDAP searches (ldap_table(5) configuration files).

Postfix counterpart: src/global/dict_ldap.c.

Settings: ``server_host`` (names, ``host:port``, ``ldap://``, ``ldaps://`` or
``ldapi://`` URLs; default localhost), ``server_port`` (389), ``search_base``,
``query_filter`` (``(mailacceptinggeneralid=%s)``), ``result_attribute``
(``maildrop``), ``special_result_attribute`` (attributes holding DNs whose own
result attributes are the answer, followed ``recursion_limit`` (1000) deep),
``terminal_result_attribute``, ``leaf_result_attribute``, ``result_format``
(``%s``), ``domain``, ``scope`` (``sub``, ``one``, ``base``), ``bind`` (``yes``/
``no``), ``bind_dn``, ``bind_pw``, ``timeout`` (10), ``size_limit`` and
``expansion_limit`` (0), ``dereference`` (0..3).

The %-expansions of the SQL tables apply to ``query_filter`` (values escaped as
RFC 4515 filter text) and ``search_base`` (escaped as RFC 4514 DN text). A search
base that does not exist means "not found". The driver is ldap3 (pure Python).

Diagnostics: MapError for a bad configuration file; MapRetry when no server answers,
the bind fails, or a search fails.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # ldap3 2.9.1 imports names pyasn1 has deprecated (tagMap, typeMap); harmless.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    import ldap3.utils.asn1  # noqa: F401  (imported lazily by ldap3 otherwise)
    from ldap3.core.exceptions import LDAPNoSuchObjectResult

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import MapError, MapRetry
from fastpost.mail.maps._netbase import (
    DomainFilter, NetworkMap, Suppressed, expand, format_results, load_settings,
)

_SCOPES = {"sub": ldap3.SUBTREE, "one": ldap3.LEVEL, "base": ldap3.BASE}
_DEREF = {"0": ldap3.DEREF_NEVER, "1": ldap3.DEREF_SEARCH, "2": ldap3.DEREF_BASE,
          "3": ldap3.DEREF_ALWAYS}


def escape_filter(text: str) -> str:
    out = []
    for c in text:
        if c in "*()\\\0":
            out.append("\\%02x" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def escape_dn(text: str) -> str:
    out = []
    for i, c in enumerate(text):
        if c in ',+"\\<>;=' or (i == 0 and c in "# ") or (i == len(text) - 1 and c == " "):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


class LdapMap(NetworkMap):
    type = "ldap"

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS, cfg=None):
        s = load_settings(name, cfg)
        self.port = s.get_int("server_port", 389)
        self.search_base = s.get("search_base")
        self.query_filter = s.get("query_filter", "(mailacceptinggeneralid=%s)") or \
            "(mailacceptinggeneralid=%s)"
        self.result_attributes = s.get_list("result_attribute", "maildrop")
        self.special = s.get_list("special_result_attribute")
        self.terminal = s.get_list("terminal_result_attribute")
        self.leaf = s.get_list("leaf_result_attribute")
        self.result_format = s.get("result_format", "%s") or "%s"
        self.domain = DomainFilter(s.get_list("domain"), cfg)
        scope = s.get("scope", "sub") or "sub"
        if scope not in _SCOPES:
            raise MapError(f"{s.path}: unknown scope: {scope}")
        self.scope = _SCOPES[scope]
        bind = s.get("bind", "yes").lower()
        if bind not in ("yes", "no", "true", "false"):
            raise MapError(f"{s.path}: unsupported bind method: {bind} (yes or no)")
        self.bind = bind in ("yes", "true")
        self.bind_dn = s.get("bind_dn")
        self.bind_pw = s.get("bind_pw")
        self.timeout = s.get_int("timeout", 10)
        self.expansion_limit = s.get_int("expansion_limit", 0)
        self.size_limit = s.get_int("size_limit", self.expansion_limit)
        self.recursion_limit = s.get_int("recursion_limit", 1000)
        self.deref = _DEREF.get(s.get("dereference", "0"), ldap3.DEREF_NEVER)
        hosts = s.get_list("server_host", "localhost")
        super().__init__(name, flags, hosts)

    def eligible(self, key: str) -> bool:
        return self.domain.allows(key)

    def connect(self, host: str):
        if "://" in host:
            server = ldap3.Server(host, connect_timeout=self.timeout, get_info=ldap3.NONE)
        else:
            h, _, p = host.partition(":")
            server = ldap3.Server(h, port=int(p) if p else self.port,
                                  connect_timeout=self.timeout, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server, user=self.bind_dn if self.bind and self.bind_dn else None,
            password=self.bind_pw if self.bind and self.bind_dn else None,
            receive_timeout=self.timeout, read_only=True, raise_exceptions=True)
        conn.open()
        if self.bind and self.bind_dn:
            conn.bind()
        return conn

    def disconnect(self, conn) -> None:
        conn.unbind()

    def _search(self, conn, base: str, filt: str, scope, attrs: list[str]):
        try:
            conn.search(base, filt, search_scope=scope, attributes=attrs or [ldap3.NO_ATTRIBUTES],
                        size_limit=self.size_limit, time_limit=self.timeout,
                        dereference_aliases=self.deref)
        except LDAPNoSuchObjectResult:
            return []
        return [r for r in conn.response if r.get("type") == "searchResEntry"]

    def _collect(self, conn, entries, values: list[str], depth: int) -> None:
        for entry in entries:
            raw = entry.get("raw_attributes", {})
            attrs = {k.lower(): v for k, v in raw.items()}
            terminal = any(attrs.get(t.lower()) for t in self.terminal)
            wanted = self.terminal if terminal else self.result_attributes
            if depth > 0 and self.leaf and not terminal:
                wanted = self.leaf
            for name in wanted:
                for v in attrs.get(name.lower(), []):
                    values.append(bytes(v).decode("utf-8", "surrogateescape"))
            if terminal or not self.special:
                continue
            if depth >= self.recursion_limit:
                raise MapRetry(f"{self.spec}: recursion limit exceeded")
            for name in self.special:
                for dn in attrs.get(name.lower(), []):
                    sub = self._search(conn, bytes(dn).decode("utf-8", "surrogateescape"),
                                       "(objectClass=*)", ldap3.BASE, self._all_attrs())
                    self._collect(conn, sub, values, depth + 1)

    def _all_attrs(self) -> list[str]:
        return list(dict.fromkeys(self.result_attributes + self.special + self.terminal
                                  + self.leaf))

    def query(self, conn, key: str) -> str | None:
        try:
            filt = expand(self.query_filter, key, escape_filter)
            base = expand(self.search_base, key, escape_dn)
        except Suppressed:
            return None
        values: list[str] = []
        self._collect(conn, self._search(conn, base, filt, self.scope, self._all_attrs()),
                      values, 0)
        return format_results(values, key, self.result_format, self.expansion_limit, self.spec)
