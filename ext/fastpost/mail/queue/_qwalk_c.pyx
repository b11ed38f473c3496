# cython: language_level=3, boundscheck=False, wraparound=False
"""Walking a queue file's records in logical order: the compiled kernel.

Reference and specification: src/fastpost/mail/queue/_qwalk_py.py (same names,
arguments, results and errors). The record headers are decoded in C over the buffer,
bounds-checked against its length; each listed record costs one bytes object and one
tuple. The rare parts (a pointer record's number, the C record's fields) call the
reference's Python code, so their semantics cannot drift.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize

from fastpost.mail.rectype import CorruptRecord
from fastpost.mail.queue._qwalk_py import pointer_target

cdef enum:
    TYPE_PTR = 112   # "p"
    TYPE_SIZE = 67   # "C"
    TYPE_MESG = 77   # "M"
    TYPE_XTRA = 88   # "X"
    TYPE_END = 69    # "E"
    TYPE_NORM = 78   # "N"
    TYPE_CONT = 76   # "L"
    TYPE_DTXT = 119  # "w"


cdef int _header(const unsigned char[:] view, Py_ssize_t pos, Py_ssize_t max_record,
                 Py_ssize_t *start, Py_ssize_t *end) except -1:
    """The record at pos: its type; its payload's bounds in start/end."""
    cdef Py_ssize_t size = view.shape[0]
    cdef Py_ssize_t p, length = 0
    cdef int shift = 0
    cdef int rtype
    cdef unsigned char byte
    if pos >= size:
        raise CorruptRecord(f"unexpected end of file at offset {pos}", pos)
    rtype = view[pos]
    if rtype == 0:
        raise CorruptRecord(f"illegal record type 0 at offset {pos}", pos)
    p = pos + 1
    while True:
        if p >= size:
            raise CorruptRecord(f"truncated record at offset {pos}", pos)
        byte = view[p]
        p += 1
        length |= (<Py_ssize_t>(byte & 0x7F)) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 28:
            raise CorruptRecord(f"illegal length varint at offset {pos}, record type {rtype}", pos)
    if length > max_record or p + length > size:
        raise CorruptRecord(f"illegal length {length} at offset {pos}, record type {rtype}", pos)
    start[0] = p
    end[0] = p + length
    return rtype


cdef inline bytes _payload(const unsigned char[:] view, Py_ssize_t start, Py_ssize_t end):
    if end == start:
        return b""
    return PyBytes_FromStringAndSize(<const char *>&view[start], end - start)


def record_at(data, Py_ssize_t pos, Py_ssize_t max_record):
    """Decode the record header at ``pos`` (see the reference)."""
    cdef const unsigned char[:] view = data
    cdef Py_ssize_t start = 0, end = 0
    if pos < 0:  # the reference indexes from the end; never asked for by the readers
        raise CorruptRecord(f"unexpected end of file at offset {pos}", pos)
    rtype = _header(view, pos, max_record, &start, &end)
    return rtype, start, end


def walk_records(data, bint follow_pointers, bint skip_content, Py_ssize_t max_record):
    """Every record up to E in logical order (see the reference)."""
    cdef const unsigned char[:] view = data
    cdef Py_ssize_t size = view.shape[0]
    cdef Py_ssize_t pos = 0, here, start = 0, end = 0
    cdef Py_ssize_t xtra_hint = 0
    cdef long jumps = 0
    cdef bint in_content = False
    cdef int rtype
    cdef list out = []
    while True:
        if pos >= size:
            raise CorruptRecord(f"no end record (file ends at offset {size})", size)
        rtype = _header(view, pos, max_record, &start, &end)
        here = pos
        pos = end
        if rtype == TYPE_PTR and follow_pointers:
            target_obj = pointer_target(_payload(view, start, end))  # any int, even huge
            if target_obj == 0:
                continue  # a null pointer: go on with the next record
            jumps += 1
            if jumps > 100_000 or not 0 < target_obj < size:
                raise CorruptRecord(f"bad pointer record at offset {here}", here)
            pos = target_obj
            continue
        if here == 0 and rtype == TYPE_SIZE:
            fields = _payload(view, start, end).split()
            if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
                hint = int(fields[0]) + int(fields[1])
                # a hint beyond any offset can never be used (0 < hint < size below)
                xtra_hint = hint if hint < size else 0
        if rtype == TYPE_MESG:
            in_content = True
            out.append((here, rtype, _payload(view, start, end)))
            if skip_content and xtra_hint and 0 < xtra_hint < size \
                    and view[xtra_hint] == TYPE_XTRA and xtra_hint >= pos:
                pos = xtra_hint
            continue
        if rtype == TYPE_XTRA:
            in_content = False
        elif in_content and skip_content and (rtype == TYPE_NORM or rtype == TYPE_CONT
                                              or rtype == TYPE_DTXT):
            continue
        out.append((here, rtype, _payload(view, start, end)))
        if rtype == TYPE_END:
            return out
