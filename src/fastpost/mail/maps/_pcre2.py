"""PCRE2 binding (selector). Fast path: ext/fastpost/mail/maps/_pcre2_c.pyx."""

from fastpost._accel import select
from fastpost.mail.maps.pcre_error import PcreError

_impl = select("fastpost.mail.maps._pcre2_c", "fastpost.mail.maps._pcre2_py")

Pattern = _impl.Pattern
RuleSet = _impl.RuleSet
error_message = _impl.error_message
CASELESS = _impl.CASELESS
DOLLAR_ENDONLY = _impl.DOLLAR_ENDONLY
DOTALL = _impl.DOTALL
EXTENDED = _impl.EXTENDED
MULTILINE = _impl.MULTILINE
UNGREEDY = _impl.UNGREEDY
ANCHORED = _impl.ANCHORED

__all__ = ["Pattern", "PcreError", "RuleSet", "error_message"]
