"""Every main.cf value cleanup reads, typed and checked once per process.

Postfix counterpart: src/cleanup/cleanup_init.c (the parameter tables and the maps
cleanup opens before it serves anyone).

``CleanupSettings.from_config(cfg)`` reads the parameters and opens the lookup tables
(before the chroot: the skeleton calls it from pre_init), so that a message never
waits for a table to be opened and a bad setting is fatal at start-up, naming
main.cf and the line.

Parameters: myhostname, mydomain, myorigin, hopcount_limit, header_size_limit,
header_address_token_limit, line_length_limit, message_size_limit,
always_add_missing_headers, remote_header_rewrite_domain, message_drop_headers,
header_from_format, undisclosed_recipients_header, enable_original_recipient,
duplicate_filter_limit, canonical_maps, sender_canonical_maps,
recipient_canonical_maps, canonical_classes, sender_canonical_classes,
recipient_canonical_classes, masquerade_domains, masquerade_exceptions,
masquerade_classes, virtual_alias_maps, virtual_alias_recursion_limit,
virtual_alias_expansion_limit, virtual_alias_address_length_limit, sender_bcc_maps,
recipient_bcc_maps, always_bcc, propagate_unmatched_extensions, recipient_delimiter,
header_checks, mime_header_checks, nested_header_checks, body_checks,
body_checks_size_limit, disable_mime_input_processing, mime_nesting_limit,
mime_boundary_length_limit, strict_7bit_headers, strict_8bitmime,
strict_8bitmime_body, empty_address_recipient, queue_service_name.
Diagnostics: ConfigError (file and line) for a bad value; a table that cannot be
opened becomes a surrogate (every lookup a temporary failure, logged once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastpost.mail import maps
from fastpost.mail.config import ConfigError, strip_braces
from fastpost.mail.maps import search

__all__ = ["CleanupSettings", "MapSet"]

_CLASSES = ("envelope_sender", "envelope_recipient", "header_sender", "header_recipient")


class MapSet:
    """The tables of one ``*_maps`` parameter, and whether lookups may block."""

    __slots__ = ("name", "maps", "network")

    def __init__(self, cfg, name: str, *, flags: int = maps.DEFAULT_FLAGS):
        self.name = name
        self.maps = maps.MapList.from_param(cfg, name, flags=flags)
        self.network = any(m.flags & maps.NETWORK for m in self.maps.maps)

    def __bool__(self) -> bool:
        return bool(self.maps)


def _classes(cfg, name: str) -> frozenset:
    words = frozenset(w.lower() for w in cfg.get_list(name))
    bad = sorted(words - set(_CLASSES))
    if bad:
        raise ConfigError(f"{name}: unknown address class '{bad[0]}' "
                          f"(expected one of {', '.join(_CLASSES)})")
    return words


@dataclass
class CleanupSettings:
    """What cleanup needs to know, read once (module docstring)."""

    myhostname: str
    mydomain: str
    myorigin: str
    hopcount_limit: int
    header_size_limit: int
    header_token_limit: int
    line_length_limit: int
    message_size_limit: int
    always_add_missing_headers: bool
    remote_header_domain: str
    drop_headers: frozenset
    header_from_format: str
    undisclosed_header: str
    original_recipient: bool
    duplicate_limit: int
    empty_address_recipient: str
    delimiters: str
    # address mapping
    canonical: MapSet
    sender_canonical: MapSet
    recipient_canonical: MapSet
    canonical_classes: frozenset
    sender_canonical_classes: frozenset
    recipient_canonical_classes: frozenset
    canonical_propagate: bool
    masquerade_domains: list
    masquerade_exceptions: set
    masquerade_exception_maps: list
    masquerade_classes: frozenset
    virtual: MapSet
    virtual_propagate: bool
    virtual_recursion_limit: int
    virtual_expansion_limit: int
    virtual_length_limit: int
    sender_bcc: MapSet
    recipient_bcc: MapSet
    always_bcc: str
    is_local: object  # Callable[[str], bool]: a domain of this host (resolve_local)
    # content inspection
    header_checks: MapSet
    mime_header_checks: MapSet
    nested_header_checks: MapSet
    body_checks: MapSet
    body_checks_size_limit: int
    mime: bool
    mime_nesting_limit: int
    mime_boundary_limit: int
    strict_7bit_headers: bool
    strict_8bitmime_body: bool
    queue_service_name: str
    warnings: list = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg) -> "CleanupSettings":
        """Read every parameter and open every table (see the module docstring)."""
        fmt = cfg.get("header_from_format").strip().lower()
        if fmt not in ("standard", "obsolete"):
            raise ConfigError(f"header_from_format: unknown value '{fmt}' "
                              "(expected standard or obsolete)")
        masq_domains: list = []
        for word in cfg.get_list("masquerade_domains"):
            word = strip_braces(word).lower().rstrip(".")
            if word.startswith("!"):
                masq_domains.append((False, word[1:].lstrip(".")))
            elif word:
                masq_domains.append((True, word.lstrip(".")))
        exceptions: set = set()
        exception_maps: list = []
        for word in cfg.get_list("masquerade_exceptions"):
            word = strip_braces(word)
            if ":" in word and not word.startswith("/"):
                exception_maps.append(maps.open_map(word, cfg))
            else:
                exceptions.add(word.lower())
        warnings = []
        nomime = cfg.get_bool("disable_mime_input_processing")
        s = cls(
            myhostname=cfg.get("myhostname"),
            mydomain=cfg.get("mydomain"),
            myorigin=cfg.get("myorigin"),
            hopcount_limit=cfg.get_int("hopcount_limit"),
            header_size_limit=cfg.get_int("header_size_limit"),
            header_token_limit=cfg.get_int("header_address_token_limit"),
            line_length_limit=cfg.get_int("line_length_limit"),
            message_size_limit=cfg.get_int("message_size_limit"),
            always_add_missing_headers=cfg.get_bool("always_add_missing_headers"),
            remote_header_domain=cfg.get("remote_header_rewrite_domain").strip(),
            drop_headers=frozenset(w.lower().rstrip(":") for w in cfg.get_list("message_drop_headers")),
            header_from_format=fmt,
            undisclosed_header=cfg.get("undisclosed_recipients_header").strip(),
            original_recipient=cfg.get_bool("enable_original_recipient"),
            duplicate_limit=cfg.get_int("duplicate_filter_limit"),
            empty_address_recipient=cfg.get("empty_address_recipient"),
            delimiters=cfg.get("recipient_delimiter"),
            canonical=MapSet(cfg, "canonical_maps"),
            sender_canonical=MapSet(cfg, "sender_canonical_maps"),
            recipient_canonical=MapSet(cfg, "recipient_canonical_maps"),
            canonical_classes=_classes(cfg, "canonical_classes"),
            sender_canonical_classes=_classes(cfg, "sender_canonical_classes"),
            recipient_canonical_classes=_classes(cfg, "recipient_canonical_classes"),
            canonical_propagate=search.propagates(cfg, "canonical"),
            masquerade_domains=masq_domains,
            masquerade_exceptions=exceptions,
            masquerade_exception_maps=exception_maps,
            masquerade_classes=_classes(cfg, "masquerade_classes"),
            virtual=MapSet(cfg, "virtual_alias_maps"),
            virtual_propagate=search.propagates(cfg, "virtual"),
            virtual_recursion_limit=cfg.get_int("virtual_alias_recursion_limit"),
            virtual_expansion_limit=cfg.get_int("virtual_alias_expansion_limit"),
            virtual_length_limit=cfg.get_int("virtual_alias_address_length_limit"),
            sender_bcc=MapSet(cfg, "sender_bcc_maps"),
            recipient_bcc=MapSet(cfg, "recipient_bcc_maps"),
            always_bcc=cfg.get("always_bcc").strip(),
            is_local=search.local_domain_predicate(cfg),
            header_checks=MapSet(cfg, "header_checks"),
            mime_header_checks=MapSet(cfg, "mime_header_checks"),
            nested_header_checks=MapSet(cfg, "nested_header_checks"),
            body_checks=MapSet(cfg, "body_checks"),
            body_checks_size_limit=cfg.get_int("body_checks_size_limit"),
            mime=not nomime,
            mime_nesting_limit=cfg.get_int("mime_nesting_limit"),
            mime_boundary_limit=cfg.get_int("mime_boundary_length_limit"),
            strict_7bit_headers=cfg.get_bool("strict_7bit_headers"),
            strict_8bitmime_body=(cfg.get_bool("strict_8bitmime_body")
                                  or cfg.get_bool("strict_8bitmime")),
            queue_service_name=cfg.get("queue_service_name"),
            warnings=warnings,
        )
        return s

    @property
    def maps_in_use(self) -> bool:
        """True when any address mapping is configured (canonical, virtual, masquerading)."""
        return bool(self.canonical or self.sender_canonical or self.recipient_canonical
                    or self.virtual or self.masquerade_domains)

    @property
    def checks_in_use(self) -> bool:
        """True when any content inspection table is configured."""
        return bool(self.header_checks or self.mime_header_checks or self.nested_header_checks
                    or self.body_checks)
