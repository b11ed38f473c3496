"""First-match scan over an ordered rule table: the pure-Python reference.

Specification and oracle of ext/fastpost/mail/maps/_rules_c.pyx, which runs the
regexp: table scan without a Python frame per rule.

RuleScan(program): program is a list of (search, negate, jump); ``search(subject)``
returns a match object or None (``re.Pattern.search``); jump is -1 for a rule and,
for an "if" block, the index just after its "endif".
RuleScan.first_match(subject) -> (index, match or None) | None
    the first rule that matches (a negated rule gives match None), or None
"""


class RuleScan:
    def __init__(self, program):
        self.program = [(search, bool(neg), int(jump)) for search, neg, jump in program]

    def first_match(self, subject):
        i = 0
        n = len(self.program)
        while i < n:
            search, neg, jump = self.program[i]
            m = search(subject)
            hit = (m is not None) != neg
            if jump >= 0:
                i = i + 1 if hit else jump
                continue
            if hit:
                return i, (None if neg else m)
            i += 1
        return None
