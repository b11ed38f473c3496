# cython: language_level=3
"""First-match scan over an ordered rule table: the compiled kernel.

Reference and specification: src/fastpost/mail/maps/_rules_py.py (same class, same
results). The loop over the rules runs in C; each rule's search callable
(re.Pattern.search for regexp: tables) is called through the C API. No I/O.
"""

cdef extern from "Python.h":
    object PyObject_CallOneArg(object callable, object arg)


cdef class RuleScan:
    """An ordered table of searches: the first rule that matches wins."""

    cdef list searches          # callable per step
    cdef list negates           # bool per step
    cdef list jumps             # int per step (-1: a rule; else index after the block)
    cdef Py_ssize_t n           # number of steps

    def __init__(self, list program):
        self.searches = [s for s, _, _ in program]
        self.negates = [bool(neg) for _, neg, _ in program]
        self.jumps = [int(j) for _, _, j in program]
        self.n = len(program)

    def first_match(self, subject):
        """Return (step index, match or None) of the first matching rule, or None."""
        cdef Py_ssize_t i = 0, jump
        cdef bint hit, neg
        cdef object m
        while i < self.n:
            m = PyObject_CallOneArg(self.searches[i], subject)
            neg = self.negates[i]
            jump = self.jumps[i]
            hit = (m is not None) != neg
            if jump >= 0:
                i = i + 1 if hit else jump
                continue
            if hit:
                return i, (None if neg else m)
            i += 1
        return None
