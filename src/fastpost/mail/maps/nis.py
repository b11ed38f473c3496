"""``nis:map``: NIS (YP) tables, as far as a host without NIS goes.

Postfix counterpart: src/util/dict_nis.c. Postfix's default alias_maps names
``nis:mail.aliases``; on a host whose NIS domain name is not set, Postfix logs
"NIS domain name not set - NIS lookups disabled" once and every lookup is "not
found". fastpost does the same. On a host that *is* in an NIS domain, fastpost
cannot ask the YP server (there is no client in Python's standard library):
lookups defer (MapRetry) so that nothing is accepted or bounced on a guess.

Diagnostics: the warning above (once per process); MapRetry on NIS hosts.
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapRetry

_warned = False


def _nis_domain() -> str:
    try:
        with open("/proc/sys/kernel/domainname", encoding="ascii") as fh:
            name = fh.read().strip()
    except OSError:
        name = ""
    return "" if name in ("", "(none)") else name


class NisMap(Map):
    type = "nis"
    class_flags = _base.FIXED

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS):
        super().__init__(name, flags)
        self.domain = _nis_domain()

    def _lookup(self, key: str) -> str | None:
        global _warned
        if not self.domain:
            if not _warned:
                _warned = True
                from fastpost.util import log

                log.warn("NIS domain name not set - NIS lookups disabled")
            return None
        raise MapRetry(f"{self.spec}: NIS domain {self.domain}: NIS lookups are not supported")


__all__ = ["NisMap"]
