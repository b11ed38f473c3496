"""The common part of ``regexp:``, ``pcre:`` and ``cidr:`` tables: rules, if/endif, $n.

Postfix counterpart: the parsers and evaluators of src/util/dict_regexp.c,
dict_pcre.c and dict_cidr.c (behaviour learned from regexp_table(5), pcre_table(5),
cidr_table(5) and from running Debian's postmap).

A table is a list of items evaluated in order, first match wins:

    Rule(test, result)      test(key) matched -> result (with $n expanded)
    Block(test, items)      "if PATTERN ... endif": items are tried only when test(key)

``test`` returns the match groups (a tuple; () for cidr) or None. A negated rule or
``if !`` block matches when the pattern does not (no groups then).

Result substitution: ``$1``..``$N`` and ``${N}`` insert group N (empty when the group
did not take part in the match), ``$$`` is a literal ``$``. An index larger than the
pattern's group count, ``$0``, ``${name}`` and a ``$`` followed by anything else make
the rule invalid (skipped with a warning), as in Postfix 3.7.

Diagnostics: problems go to ``warn(lineno, text)``; the rule is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Rule:
    lineno: int
    test: object            # callable(bytes) -> tuple | None
    negate: bool
    parts: list | None      # expansion template: str pieces and int group numbers
    result: str


@dataclass
class Block:
    lineno: int
    test: object
    negate: bool
    items: list = field(default_factory=list)


class ReplacementError(ValueError):
    pass


def parse_replacement(text: str, ngroups: int) -> list:
    """Return the template of a result: literal str pieces and int group numbers."""
    parts: list = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$":
            buf.append(c)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == "$":
            buf.append("$")
            i += 2
            continue
        if i + 1 < n and text[i + 1] == "{":
            end = text.find("}", i + 2)
            if end < 0:
                raise ReplacementError("bad replacement syntax")
            name = text[i + 2 : end]
            i = end + 1
        else:
            j = i + 1
            while j < n and text[j].isdigit():
                j += 1
            name = text[i + 1 : j]
            if not name:
                raise ReplacementError("bad replacement syntax")
            i = j
        if not name.isdigit():
            raise ReplacementError(f'non-numeric replacement index "{name}"')
        index = int(name)
        if index < 1 or index > ngroups:
            raise ReplacementError(f'out-of-range replacement index "{name}"')
        if buf:
            parts.append("".join(buf))
            buf = []
        parts.append(index)
    if buf:
        parts.append("".join(buf))
    return parts


def expand(parts: list, groups: tuple) -> str:
    out = []
    for p in parts:
        if isinstance(p, int):
            g = groups[p] if p < len(groups) else None
            if g:
                out.append(g.decode("utf-8", "surrogateescape") if isinstance(g, bytes) else g)
        else:
            out.append(p)
    return "".join(out)


def evaluate(items: list, key) -> str | None:
    """Return the result of the first matching rule, or None."""
    for item in items:
        groups = item.test(key)
        if item.negate:
            groups = () if groups is None else None
        if groups is None:
            continue
        if isinstance(item, Block):
            found = evaluate(item.items, key)
            if found is not None:
                return found
            continue
        if item.parts is None:
            return item.result
        return expand(item.parts, groups)
    return None


def split_delimited(text: str) -> tuple[str, str, str] | None:
    """Split ``/pattern/flags rest`` at the delimiters; None when unterminated."""
    if not text:
        return None
    delim = text[0]
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            i += 2
            continue
        if c == delim:
            break
        i += 1
    else:
        return None
    pattern = text[1:i]
    rest = text[i + 1 :]
    j = 0
    while j < len(rest) and rest[j] not in " \t":
        j += 1
    return pattern, rest[:j], rest[j:].strip(" \t")


class RuleBuilder:
    """Assembles items with if/endif nesting; reports unbalanced blocks."""

    def __init__(self, warn):
        self.warn = warn
        self.top: list = []
        self.stack: list[Block] = []

    @property
    def current(self) -> list:
        return self.stack[-1].items if self.stack else self.top

    def add(self, item) -> None:
        self.current.append(item)

    def push(self, block: Block) -> None:
        self.current.append(block)
        self.stack.append(block)

    def pop(self, lineno: int) -> None:
        if not self.stack:
            self.warn(lineno, "ENDIF without IF: skipping this rule")
            return
        self.stack.pop()

    def finish(self) -> list:
        for block in self.stack:
            self.warn(block.lineno, "IF has no matching ENDIF")
        self.stack = []
        return self.top


def keyword(line: str) -> tuple[str, str]:
    """Return ("if"|"endif"|"", rest) for a table line."""
    low = line[:6].lower()
    if low == "endif" or (low.startswith("endif") and line[5:6] in (" ", "\t")):
        return "endif", line[5:].strip()
    if low.startswith("if") and line[2:3] in (" ", "\t"):
        return "if", line[2:].strip(" \t")
    return "", line


def flatten(items: list, step_of) -> tuple[list, list]:
    """Lay rules and if-blocks out as a program for a compiled scan.

    Returns (program, rules): program[i] = (step_of(item.test), negate, jump) with
    jump -1 for a rule and, for a block, the index just after its last rule;
    rules[i] is the Rule at step i (None for a block).
    """
    program: list = []
    rules: list = []

    def walk(seq):
        for item in seq:
            at = len(program)
            program.append([step_of(item.test), item.negate, -1])
            if isinstance(item, Block):
                rules.append(None)
                walk(item.items)
                program[at][2] = len(program)
            else:
                rules.append(item)

    walk(items)
    return [tuple(step) for step in program], rules
