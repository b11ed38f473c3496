"""First-match rule scan (selector). Fast path: ext/fastpost/mail/maps/_rules_c.pyx."""

from fastpost._accel import select

_impl = select("fastpost.mail.maps._rules_c", "fastpost.mail.maps._rules_py")

RuleScan = _impl.RuleScan
