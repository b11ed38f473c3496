"""ClientInfo, Envelope and Recipient: the compiled build against the reference.

fastpost.daemons.smtpd._info_py is the one source of both; compiled (_info_c) each
class is a cdef class that is still a dataclass, with a written-out __init__ for the
two whose fields have a default_factory. These tests hold the builds to each other and
the written __init__ to the fields: the same fields, defaults, repr, equality,
replace(), and a new list or dict per instance where the dataclass has a factory.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from fastpost.daemons.smtpd import _info_py, info

_info_c = pytest.importorskip("fastpost.daemons.smtpd._info_c")

CLASSES = ("ClientInfo", "Envelope", "Recipient")
#: The arguments every class needs (the fields without a default).
REQUIRED = {"ClientInfo": (), "Envelope": ("a@example.org",), "Recipient": ("b@example.net",)}


@pytest.fixture(params=["compiled", "reference"])
def impl(request):
    return _info_c if request.param == "compiled" else _info_py


def test_the_selector_hands_out_the_compiled_classes():
    for name in CLASSES:
        assert getattr(info, name) is getattr(_info_c, name)
        assert dataclasses.is_dataclass(getattr(_info_c, name))


@pytest.mark.parametrize("name", CLASSES)
def test_fields_are_the_same_in_both_builds(name):
    def shape(cls):
        return [(f.name, f.default, f.default_factory, f.init) for f in dataclasses.fields(cls)]
    assert shape(getattr(_info_c, name)) == shape(getattr(_info_py, name))


@pytest.mark.parametrize("name", CLASSES)
def test_init_takes_the_fields_in_order_with_their_defaults(impl, name):
    cls = getattr(impl, name)
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(_info_py.__dict__[name].__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields):
        if f.default_factory is not dataclasses.MISSING:
            assert p.default is _info_py._FRESH
        elif f.default is dataclasses.MISSING:
            assert p.default is inspect.Parameter.empty
        else:
            assert p.default == f.default
    # And a new instance holds each field's default (a factory's new object).
    obj = cls(*REQUIRED[name])
    for f in fields[len(REQUIRED[name]):]:
        want = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert getattr(obj, f.name) == want


@pytest.mark.parametrize("name", CLASSES)
def test_repr_eq_and_replace_match_across_builds(name):
    c_cls, p_cls = getattr(_info_c, name), getattr(_info_py, name)
    names = [f.name for f in dataclasses.fields(p_cls)]
    # Every field given a value of its own, by keyword and by position.
    values = {n: f"v-{i}" for i, n in enumerate(names)}
    c_obj, p_obj = c_cls(**values), p_cls(**values)
    assert repr(c_obj) == repr(p_obj)
    assert c_cls(*values.values()) == c_obj and p_cls(*values.values()) == p_obj
    assert c_obj != c_cls(**{**values, names[-1]: "other"})
    for obj in (c_obj, p_obj):
        new = dataclasses.replace(obj, **{names[0]: "changed"})
        assert type(new) is type(obj) and getattr(new, names[0]) == "changed"
        assert all(getattr(new, n) == values[n] for n in names[1:])
        with pytest.raises(TypeError):
            hash(obj)  # eq without frozen: unhashable, as the dataclass was


def test_factories_make_a_new_object_per_instance_and_none_stays_none(impl):
    a, b = impl.ClientInfo(), impl.ClientInfo()
    assert a.forwarded == {} and a.forwarded is not b.forwarded
    e1, e2 = impl.Envelope("x"), impl.Envelope("x")
    for name in ("recipients", "bcc", "prepend"):
        assert getattr(e1, name) == [] and getattr(e1, name) is not getattr(e2, name)
    given = [impl.Recipient("r")]
    assert impl.Envelope("x", recipients=given).recipients is given
    assert impl.ClientInfo(forwarded=None).forwarded is None
    assert impl.Envelope("x", bcc=None, prepend=None).bcc is None


def test_the_compiled_classes_keep_their_values_as_given():
    # Fields are Python objects: no conversion (a bool field keeps an int).
    c = _info_c.ClientInfo(improper_pipelining=1, port=25)
    assert c.improper_pipelining == 1 and type(c.improper_pipelining) is int
    assert c.port == 25
    with pytest.raises(AttributeError):
        c.no_such_field = 1  # the fixed fields only, as the slotted class had
    assert c.text == "unknown[]"
    c.name, c.addr = "host.example", "192.0.2.7"
    assert c.text == "host.example[192.0.2.7]"
