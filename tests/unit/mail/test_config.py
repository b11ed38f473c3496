"""main.cf reading and $name expansion (differential tests against postconf live in
tests/postconf/)."""

import pytest

from fastpost.mail.config import Config, ConfigError, parse_time, split_list


def cfg(text, **overrides):
    return Config("/nonexistent", overrides, text=text)


def test_continuation_and_comments():
    c = cfg("a = one\n  two\n# comment inside\n   three\nb=x\n")
    assert c.get("a") == "one two three"
    assert c.lines == {"a": 1, "b": 5}


def test_last_definition_wins_and_overrides():
    c = cfg("a = 1\na = 2\n", a="3")
    assert c.get("a") == "3"
    assert cfg("a = 1\na = 2\n").get("a") == "2"


def test_missing_equals_names_file_and_line():
    with pytest.raises(ConfigError, match=r"main.cf, line 2: missing '=' after attribute name"):
        cfg("a = 1\nbogus\n")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("$a", "A"),
        ("${a}", "A"),
        ("$(a)", "A"),
        ("$$a", "$a"),
        ("${a?yes}", "yes"),
        ("${empty?yes}", ""),
        ("${nothere:dflt}", "dflt"),
        ("${a:dflt}", ""),
        ("${a?{x y}:{z}}", "x y"),
        ("${nothere?{x y}:{z}}", "z"),
        ("${{$lvl} <level {3.6} ? {old} : {new}}", "new"),
        ("${{3.10} >level {3.6} ? {yes} : {no}}", "yes"),
        ("${{10} < {9} ? {lt} : {ge}}", "ge"),
        ("${{a} != {b} ? {ne} : {eq}}", "ne"),
        ("$a$a", "AA"),
        ("${ a }", "A"),
        ("${a ? {x} : {y} }", "x"),
        ("${a?{x}:y z}", "x"),
        ("${nothere?{x}:y z}", "y z"),
        ("${a?x : y}", "x : y"),
        ("${:dflt}", "dflt"),
        ("${{a} == {a} ? {t}}", "t"),
        ("${{a} == {b} ? {t}}", ""),
        ("${{a} == {b}}", ""),
        ("${{a} == {b} ? {t} : f g}", "f g"),
        ("${{ 10} < {9} ? {lt} : {ge}}", "lt"),  # not both numbers: compared as text
    ],
)
def test_expansion(text, expected):
    c = cfg("a = A\nempty =\nlvl = 3.6\n")
    assert c.expand(text) == expected


def test_recursive_and_loop():
    c = cfg("a = $b\nb = ${c}x\nc = C\nloop1 = $loop2\nloop2 = $loop1\n")
    assert c.get("a") == "Cx"
    with pytest.raises(ConfigError, match="unreasonable macro call nesting"):
        c.get("loop1")


def test_compat_level_defaults():
    assert cfg("compatibility_level = 3.6\n").get("mynetworks_style") == "host"
    assert cfg("").get("mynetworks_style") == "subnet"
    assert cfg("").get("smtpd_relay_restrictions") == ""


def test_typed_values():
    c = cfg("smtpd_recipient_limit = 12\nsmtpd_timeout = 5m\nbiff = yes\nmaximal_queue_lifetime = 2\n")
    assert c.get_int("smtpd_recipient_limit") == 12
    assert c.get_time("smtpd_timeout") == 300
    assert c.get_time("maximal_queue_lifetime") == 2 * 86400  # default unit: days
    assert c.get_bool("biff") is True
    assert c.typed("smtpd_timeout") == 300
    assert cfg("compatibility_level = 3.6\nstress = yes\n").get_time("smtpd_timeout") == 10


def test_bad_typed_values_name_the_line():
    c = cfg("x = 1\nsmtpd_recipient_limit = lots\nbiff = maybe\n")
    with pytest.raises(ConfigError, match=r"line 2: bad numerical configuration"):
        c.get_int("smtpd_recipient_limit")
    with pytest.raises(ConfigError, match=r"line 3: bad boolean configuration"):
        c.get_bool("biff")


def test_lists():
    assert split_list("a, b  c,,d") == ["a", "b", "c", "d"]
    assert split_list("check_policy_service { inet:h:1, timeout=10s }, permit") == [
        "check_policy_service",
        "{ inet:h:1, timeout=10s }",
        "permit",
    ]


def test_parse_time():
    assert parse_time("10") == 10
    assert parse_time("2w") == 1209600
    assert parse_time("1d", "s") == 86400
    assert parse_time("x") is None
    assert parse_time("-1") is None


@pytest.mark.parametrize("text,message", [
    ("x$", "empty macro name"),
    ("a$%b", "empty macro name"),
    ("${}", "empty macro name"),
    ("${a", "truncated macro reference"),
    ("${a!x}", "attribute name syntax error"),
    ("${a?{x}:{y}z}", "unexpected input"),
    ("${{a} ~ {b} ? {c} : {d}}", "expected"),
    ("${{a} == {b} ? {c} : {d} extra}", "unexpected input"),
    ("${{3.6} <level {x} ? {c} : {d}}", "compatibility level"),
])
def test_expansion_errors_as_postfix(text, message):
    with pytest.raises(ConfigError, match=message):
        cfg("a = A\n").expand(text)
