"""``pcre:`` tables: Perl-compatible regular expressions through Debian's libpcre2.

Postfix counterpart: src/util/dict_pcre.c; syntax pcre_table(5).

Same table syntax as regexp: (``/pattern/flags result``, ``!/pattern/``, if/endif,
$n substitution); the patterns are compiled by libpcre2-8, the library C Postfix uses,
so they mean exactly what they mean there. Matching is on bytes (no UTF mode), as
Postfix 3.7 does.

Flags (each toggles): ``i`` caseless (on by default), ``m`` multi-line, ``s`` dot
matches newline, ``x`` extended (blanks and comments in the pattern), ``A`` anchored,
``E`` dollar matches only at the end, ``U`` ungreedy, ``X`` accepted and ignored
(PCRE2 has no "extra" option).

The rules are evaluated by a compiled RuleSet (ext/fastpost/mail/maps/_pcre2_c.pyx):
the scan over the patterns, if/endif included, runs in C and only the winning rule's
groups become Python objects.

Diagnostics: a pattern PCRE2 refuses is a warning naming file and line and the rule
is skipped; an unreadable file is a MapRetry.
"""

from __future__ import annotations

from fastpost.mail.maps import _pcre2
from fastpost.mail.maps._patterns import expand, flatten
from fastpost.mail.maps.regexp import RegexpMap, TranslateError

_FLAGS = {
    "i": _pcre2.CASELESS, "m": _pcre2.MULTILINE, "s": _pcre2.DOTALL, "x": _pcre2.EXTENDED,
    "A": _pcre2.ANCHORED, "E": _pcre2.DOLLAR_ENDONLY, "U": _pcre2.UNGREEDY, "X": 0,
}


class PcreMap(RegexpMap):
    type = "pcre"

    def compile(self, pattern: str, flags: str):
        options = _pcre2.CASELESS
        for f in flags:
            if f not in _FLAGS:
                raise TranslateError(f'unknown regexp option "{f}"')
            options ^= _FLAGS[f]
        try:
            compiled = _pcre2.Pattern(pattern.encode("utf-8", "surrogateescape"), options)
        except _pcre2.PcreError as exc:
            raise TranslateError(f"error in regex at offset {exc.offset}: {exc.message}")
        return compiled.match, compiled.groups

    def _load(self, text: str) -> None:
        super()._load(text)
        program, self._rules = flatten(self._items, lambda test: test.__self__)
        self._ruleset = _pcre2.RuleSet(program)

    def _lookup(self, key: str) -> str | None:
        found = self._ruleset.first_match(key.encode("utf-8", "surrogateescape"))
        if found is None:
            return None
        rule = self._rules[found[0]]
        if rule.parts is None:
            return rule.result
        return expand(rule.parts, found[1])
