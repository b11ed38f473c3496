"""``unix:passwd.byname`` and ``unix:group.byname``: the system's user and group files.

Postfix counterpart: src/util/dict_unix.c. The default local_recipient_maps
(``proxy:unix:passwd.byname $alias_maps``) needs it: a local user is a valid
recipient.

Values are in the form of the files (``name:x:uid:gid:gecos:home:shell``,
``name:x:gid:member,member``). Keys are folded to lower case like every fixed
table's (so, as with Postfix, a login name with capitals is never found).

Diagnostics: MapError for a name other than passwd.byname / group.byname (the
table then becomes a surrogate whose lookups defer, as Postfix's does).
"""

from __future__ import annotations

import grp
import pwd

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapError, bad_utf8


class UnixMap(Map):
    type = "unix"
    class_flags = _base.FIXED

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS):
        super().__init__(name, flags)
        if name not in ("passwd.byname", "group.byname"):
            raise MapError(f"unknown table: unix:{name}")

    def get(self, key: str) -> str | None:
        if not key.isascii() and bad_utf8(self, key):
            return None
        return self._lookup(self.fold(key))

    def _lookup(self, key: str) -> str | None:
        try:
            if self.name == "passwd.byname":
                p = pwd.getpwnam(key)
                return f"{p.pw_name}:{p.pw_passwd}:{p.pw_uid}:{p.pw_gid}:{p.pw_gecos}:{p.pw_dir}:{p.pw_shell}"
            g = grp.getgrnam(key)
            return f"{g.gr_name}:{g.gr_passwd}:{g.gr_gid}:{','.join(g.gr_mem)}"
        except (KeyError, ValueError):
            return None

    def items(self):
        if self.name == "passwd.byname":
            return iter([(p.pw_name, self.get(p.pw_name)) for p in pwd.getpwall()])
        return iter([(g.gr_name, self.get(g.gr_name)) for g in grp.getgrall()])
