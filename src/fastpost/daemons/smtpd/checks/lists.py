"""Restriction lists: compiling ``smtpd_*_restrictions`` and classes into steps.

Postfix counterpart: smtpd_check_init() and generic_checks() of
src/smtpd/smtpd_check.c (which walk the words of a list at run time).

    steps = compile_list(words, engine)     # list[registry.Step]

A list is the words of the parameter (commas and blanks separate them, ``{ }``
groups one word). Each word is a restriction name (case does not matter, old
names are accepted: registry.ALIASES), ``warn_if_reject`` (applies to the next
restriction), or the name of a restriction class (smtpd_restriction_classes).
Restrictions that take an argument take the next word: a table ``type:name``
(opened here, at start-up: a missing table logs its warning now and defers every
lookup), a DNS list domain, seconds, a policy service.

As in Postfix, mistakes inside a list are not fatal: an unknown name or a bad
argument compiles to a step that, when reached, logs the warning Postfix logs and
answers ``451 4.3.5 Server configuration error``. What is fatal at start-up (a
ConfigError naming the parameter) is checked by ``check_relay_rule`` and by the
class definitions: a class without a definition, and relay and recipient lists of
which neither can refuse unauthorised relaying.

Parameters: smtpd_restriction_classes and the classes it names,
smtpd_relay_restrictions, smtpd_recipient_restrictions (the relay rule).
Diagnostics: ConfigError (fatal); warnings through the steps (at run time).
"""

from __future__ import annotations

from fastpost.daemons.smtpd.checks.registry import ALIASES, REGISTRY, TABLE, WORD, Step
from fastpost.mail.config import ConfigError, strip_braces
from fastpost.util import log

__all__ = ["compile_list", "check_relay_rule", "RELAY_REQUIRED", "split_words",
           "WARN_IF_REJECT"]

WARN_IF_REJECT = "warn_if_reject"

#: Restrictions of which one must appear (not after warn_if_reject, not after permit)
#: in smtpd_relay_restrictions or smtpd_recipient_restrictions.
RELAY_REQUIRED = ("reject_unauth_destination", "defer_unauth_destination", "reject",
                  "defer", "defer_if_permit", "check_relay_domains")


def split_words(text: str) -> list[str]:
    """Split a restriction list value (an access-table result) into words."""
    from fastpost.mail.config import split_list

    return split_list(text)


def _unknown(ev, step, name, klass):
    log.warn('unknown smtpd restriction: "%s"', step.word)
    return ev.server_error()


def _bad(ev, step, name, klass):
    log.warn("%s", step.error)
    return ev.server_error()


def _class(ev, step, name, klass):
    return ev.run_class(step.arg, name, klass)


def _warn_if_reject(ev, step, name, klass):  # handled by the list loop
    raise AssertionError("warn_if_reject is not called")


#: The check a bare ``type:table`` in a top-level list stands for (Postfix's default ACL).
DEFAULT_ACL = {
    "smtpd_client_restrictions": "check_client_access",
    "smtpd_helo_restrictions": "check_helo_access",
    "smtpd_sender_restrictions": "check_sender_access",
    "smtpd_relay_restrictions": "check_recipient_access",
    "smtpd_recipient_restrictions": "check_recipient_access",
    "smtpd_etrn_restrictions": "check_etrn_access",
}
_ACL_NAMES = ("check_client_access", "check_reverse_client_hostname_access",
              "check_helo_access", "check_sender_access", "check_recipient_access",
              "check_etrn_access")


#: The check a bare table means in each top-level list (Postfix's default ACL).
_LIST_ACL = {kind: DEFAULT_ACL[f"smtpd_{kind}_restrictions"]
             for kind in ("client", "helo", "sender", "relay", "recipient", "etrn")}


def _bare_table(ev, step, name, klass):
    acl = _LIST_ACL.get(ev.list_kind)
    if acl is None:
        log.warn('specify one of (%s) before %s restriction "%s"', ", ".join(_ACL_NAMES),
                 klass, step.word)
        return ev.server_error()
    return REGISTRY[acl].fn(ev, step, name, klass)


def _table_in_value(ev, step, name, klass):
    log.warn("access table %s has entry with lookup table: %s", step.error, step.word)
    log.warn("do not specify lookup tables inside SMTPD access maps")
    log.warn("define a restriction class and specify its name instead.")
    return ev.server_error()


def compile_list(words: list[str], engine, origin: str = "", *,
                 value_of: str | None = None) -> list[Step]:
    """Compile the words of a restriction list (module docstring).

    ``origin`` is the parameter (or class) name; ``value_of`` the table when the
    list is an access-table result.
    """
    steps: list[Step] = []
    _warn_after_permit(words, origin)
    i = 0
    n = len(words)
    while i < n:
        word = strip_braces(words[i]) if words[i].startswith("{") else words[i]
        i += 1
        lname = word.lower()
        if lname == WARN_IF_REJECT:
            steps.append(Step(lname, _warn_if_reject))
            continue
        name = ALIASES.get(lname, lname)
        spec = REGISTRY.get(name)
        if spec is None:
            if word in engine.class_names:
                steps.append(Step(word, _class, arg=word))
            elif ":" in word and _is_table(word):
                if value_of is not None:
                    steps.append(Step(lname, _table_in_value, word=word, error=value_of))
                else:
                    # Which check a bare table stands for depends on the list being
                    # evaluated (a class inherits it from the list that names it).
                    steps.append(Step(lname, _bare_table, arg=engine.open_table(word), word=word))
            else:
                steps.append(Step(lname, _unknown, word=word))
            continue
        if spec.deprecated:
            steps.append(Step(lname, _deprecated_note, word=spec.deprecated))
        if spec.arg == TABLE:
            arg = strip_braces(words[i]) if i < n and words[i].startswith("{") else (
                words[i] if i < n else "")
            if not arg or ":" not in arg or arg.startswith(("[", "/")) or not _is_table(arg):
                shown = words[i] if i < n else word
                steps.append(Step(name, _bad, error=f'restriction {word}: bad argument "{shown}": '
                                                    f"need maptype:mapname"))
                # The argument is not consumed (it may be the next restriction).
                continue
            i += 1
            steps.append(Step(name, spec.fn, arg=engine.open_table(arg), word=arg, spec=spec))
        elif spec.arg == WORD:
            if i >= n:
                steps.append(Step(name, _bad, error=f"restriction {word} requires an argument",
                                  spec=spec))
                continue
            arg = words[i]
            i += 1
            try:
                value = spec.compile(arg, engine)
            except ValueError as exc:
                steps.append(Step(name, _bad, error=str(exc), word=arg, spec=spec))
                continue
            steps.append(Step(name, spec.fn, arg=value, word=arg, spec=spec))
        else:
            steps.append(Step(name, spec.fn, spec=spec))
    return steps


def _warn_after_permit(words: list[str], origin: str) -> None:
    """Postfix's start-up warning for restrictions that can never be reached."""
    lowered = [w.lower() for w in words]
    if "permit" in lowered:
        i = lowered.index("permit")
        if i + 1 < len(words) and origin:
            log.warn("restriction `%s' after `permit' is ignored", words[i + 1])


def _deprecated_note(ev, step, name, klass):
    ev.note_once(step.word)
    return 0


def _is_table(word: str) -> bool:
    kind = word.split(":", 1)[0]
    return bool(kind) and kind.replace("_", "").isalnum() and kind[0].isalpha()


def _has_required(words: list[str], classes: dict[str, list[str]], seen: set) -> bool:
    i = 0
    while i < len(words):
        w = strip_braces(words[i]) if words[i].startswith("{") else words[i]
        lw = w.lower()
        if lw == WARN_IF_REJECT:
            i += 2
            continue
        if lw == "permit":
            return False
        if ALIASES.get(lw, lw) in RELAY_REQUIRED:
            return True
        if w in classes and w not in seen:
            seen.add(w)
            if _has_required(classes[w], classes, seen):
                return True
        i += 1
    return False


def check_relay_rule(relay: list[str], recipient: list[str], classes: dict[str, list[str]],
                     where: str = "") -> None:
    """Raise ConfigError unless the relay or recipient list can refuse relaying.

    Postfix refuses to start an smtpd whose smtpd_relay_restrictions and
    smtpd_recipient_restrictions both lack a working reject_unauth_destination,
    defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains
    (one after warn_if_reject or after permit does not count; classes are followed).
    """
    if _has_required(recipient, classes, set()) or _has_required(relay, classes, set()):
        return
    prefix = f"{where}: " if where else ""
    raise ConfigError(f"{prefix}in parameter smtpd_relay_restrictions or "
                      f"smtpd_recipient_restrictions, specify at least one working instance "
                      f"of: {', '.join(RELAY_REQUIRED[:-1])} or {RELAY_REQUIRED[-1]}")
