"""main.cf / master.cf editing and postconf's master.cf layout (the differential tests
in tests/postconf/ compare whole files with Debian's postconf)."""

import os

import pytest

from fastpost.mail import confedit


def lines(text):
    return text.splitlines()


def test_set_replaces_every_entry_and_keeps_interior_comments():
    before = lines("a = 1\nb = x\n  y\n# kept\n  z\n\nc = 3\na = 2\n")
    warned = []
    after = confedit.edit_main_cf(before, set_values={"a": "9", "b": "new", "d": ""},
                                  warn=warned.append)
    assert after == ["a = 9", "b = new", "# kept", "", "c = 3", "a = 9", "d = "]
    assert warned == ['multiple entries for "a"']


def test_remove_and_comment_out():
    before = lines("a = 1\nb = x\n  y\n# c\nc = 3\n")
    assert confedit.edit_main_cf(before, remove=["b", "zz"]) == ["a = 1", "# c", "c = 3"]
    assert confedit.edit_main_cf(before, comment=["b"]) == ["a = 1", "#b = x", "#  y", "# c", "c = 3"]


@pytest.mark.parametrize("request_text,message", [
    ("novalue", "missing '=' after attribute name"),
    ("bad name=1", "missing '=' after attribute name"),
    ("=1", "missing attribute name"),
])
def test_bad_assignment(request_text, message):
    with pytest.raises(confedit.EditError, match=message):
        confedit.parse_assignment(request_text)


def test_columns_at_tab_stops_and_overflow():
    cols = ["smtp", "inet", "n", "-", "y", "-", "-", "smtpd"]
    assert confedit.format_entry(cols) == [
        "smtp       inet  n       -       y       -       -       smtpd"]
    cols = ["scalemail-backend", "unix", "-", "n", "n", "-", "2", "pipe flags=R"]
    assert confedit.format_entry(cols)[0].startswith("scalemail-backend unix - n       n")


def test_options_normalised_and_folded():
    cols = ["s", "unix", "-", "-", "n", "-", "-",
            "smtp -o { a = b c } -o{x=y} -o f={g} { z } {w v} rest"]
    assert confedit.format_entry(cols) == [
        "s          unix  -       -       n       -       -       smtp -o {a=b c} -o x=y"
        " -o f={g} z {w v} rest"]
    assert confedit.format_entry(cols, fold=True) == [
        "s          unix  -       -       n       -       -       smtp",
        "    -o {a=b c}", "    -o x=y", "    -o f={g}", "    z {w v} rest"]


def test_fold_wraps_before_column_80():
    words = " ".join(f"word{i:02d}" for i in range(20))
    out = confedit.format_entry(["p", "unix", "-", "n", "n", "-", "-", "pipe " + words], fold=True)
    assert all(len(line) < 80 for line in out)
    assert " ".join(" ".join(out).split()[7:]) == "pipe " + words


def test_only_leading_options_are_parameters():
    options, rest = confedit.split_options(["-o", "a=1", "-ob=2", "flags=R", "-o", "c=3"])
    assert options == [("a", "1"), ("b", "2")]
    assert rest == ["flags=R", "-o", "c=3"]


def test_master_file_edits(tmp_path):
    path = tmp_path / "master.cf"
    path.write_text("# head\nsmtp inet n - y - - smtpd\n  -o a=1\n# inside\n  -o b=2\n"
                    "pickup unix n - y 60 1 pickup\nold unix - - n - - error\n")
    m = confedit.MasterFile(str(path))
    assert m.set_param("smtp/inet", "a", "5")
    assert m.set_param("smtp/inet", "c", "7")
    assert m.set_param("smtp/inet", "b", None)
    assert m.set_field("pickup/unix", "wakeup", "30")
    assert m.delete("old/unix")
    m.set_entry("new/unix", "new unix - n n - - discard")
    assert not m.set_field("nosuch/unix", "wakeup", "1")
    with pytest.raises(confedit.EditError, match="whitespace"):
        m.set_param("smtp/inet", "d", "has space")
    with pytest.raises(confedit.EditError, match="invalid service attribute name"):
        m.set_field("pickup/unix", "colour", "red")
    confedit.write_lines(str(path), m.result())
    assert path.read_text() == (
        "# head\n# inside\n"
        "smtp       inet  n       -       y       -       -       smtpd\n"
        "    -o a=5\n    -o c=7\n"
        "pickup     unix  n       -       y       30      1       pickup\n"
        "new        unix  -       n       n       -       -       discard\n")


def test_write_keeps_mode_and_is_atomic(tmp_path):
    path = tmp_path / "main.cf"
    path.write_text("a = 1\n")
    os.chmod(path, 0o640)
    confedit.write_lines(str(path), ["a = 2"])
    assert path.read_text() == "a = 2\n"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["main.cf"]
