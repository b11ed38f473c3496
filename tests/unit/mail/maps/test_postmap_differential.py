"""Differential tests: ``fastpost map`` against Debian's real ``postmap``.

For each corpus table under tests/data/maps (regexp, pcre, cidr, texthash, and the
indexed types built by both tools) the same query keys must give identical standard
output and exit status. Indexed tables are also read across: C Postfix reads the files
fastpost builds and fastpost reads the files postmap builds.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest



def need_program(name):
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        pytest.skip(f"{name} not installed (./dev test installs tests/apt-packages.txt as root)")
    return path

pytestmark = pytest.mark.postfix

DATA = pathlib.Path(__file__).resolve().parents[3] / "data" / "maps"


def fastpost_map(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastpost", "map", *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd)


def postmap(*args, stdin=None, cwd=None):
    return subprocess.run([need_program("postmap"), *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd)


def same(args, stdin=None, cwd=None):
    theirs = postmap(*args, stdin=stdin, cwd=cwd)
    ours = fastpost_map(*args, stdin=stdin, cwd=cwd)
    assert "Traceback" not in ours.stderr, ours.stderr
    assert (ours.stdout, ours.returncode) == (theirs.stdout, theirs.returncode), (
        f"postmap {' '.join(args)}\n--- postmap stderr:\n{theirs.stderr}\n"
        f"--- fastpost stderr:\n{ours.stderr}")
    return ours


@pytest.mark.parametrize("spec", ["regexp:basic.regexp", "pcre:basic.pcre",
                                  "cidr:basic.cidr", "texthash:basic.map",
                                  "regexp:edge.regexp", "pcre:edge.pcre", "cidr:edge.cidr"])
def test_pattern_and_text_tables(spec, tmp_path):
    name = spec.split(":", 1)[1]
    shutil.copy(DATA / name, tmp_path / name)
    keys = (DATA / f"{name}.keys").read_text()
    out = same(["-q", "-", spec], stdin=keys, cwd=tmp_path)
    assert out.stdout.count("\n") >= 7  # the corpus really matches things
    # One key at a time: the exit status of a hit and of a miss.
    for key in keys.splitlines()[:8] + ["surely-not-there"]:
        same(["-q", key, spec], cwd=tmp_path)


@pytest.mark.parametrize("options", [[], ["-f"], ["-r"], ["-w"], ["-n"], ["-N"]])
@pytest.mark.parametrize("type_", ["lmdb", "hash"])
def test_indexed_build_read_across(type_, options, tmp_path):
    """Both tools build the same source; each reads the other's file identically."""
    src = (DATA / "basic.map").read_text()
    keys = (DATA / "basic.map.keys").read_text()
    (tmp_path / "theirs").write_text(src)
    (tmp_path / "ours").write_text(src)
    assert postmap(*options, "lmdb:theirs", cwd=tmp_path).returncode == 0
    built = fastpost_map(*options, f"{type_}:ours", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "ours.lmdb").exists() and not (tmp_path / "ours.db").exists()
    fold = [] if "-f" not in options else ["-f"]
    dump_theirs = postmap("-s", "lmdb:theirs", cwd=tmp_path).stdout
    assert postmap("-s", "lmdb:ours", cwd=tmp_path).stdout == dump_theirs
    assert fastpost_map("-s", f"{type_}:theirs", cwd=tmp_path).stdout == dump_theirs
    expect = postmap(*fold, "-q", "-", "lmdb:theirs", stdin=keys, cwd=tmp_path)
    for reader, name in ((postmap, "lmdb:ours"), (fastpost_map, f"{type_}:ours"),
                         (fastpost_map, f"{type_}:theirs")):
        got = reader(*fold, "-q", "-", name, stdin=keys, cwd=tmp_path)
        assert (got.stdout, got.returncode) == (expect.stdout, expect.returncode), name


def test_build_warnings_name_file_and_line(tmp_path):
    (tmp_path / "t").write_text("good value\nnovalue\n  orphan continuation? no\n")
    (tmp_path / "t").write_text(" orphan value\ngood value\nnovalue\nalias: x\n")
    out = fastpost_map("lmdb:t", cwd=tmp_path)
    assert out.returncode == 0
    assert "t, line 1: logical line must not start with whitespace" in out.stderr
    assert "t, line 3: expected format: key whitespace value" in out.stderr
    assert 't, line 4: record is in "key: value" format' in out.stderr


@pytest.mark.parametrize("spec", [
    "inline:{FOO=bar, {k2 = v 2}, x=y}", "inline:{a=1 b=2 A=3}", "inline:{x=}",
    "inline:{}", "inline:{foo}", "inline:{x=y", "static:{ a b }", "static:plain",
    "static:{x", "unionmap:{inline:{x=1}, static:2, inline:{y=3}}",
    "pipemap:{inline:{x=1}, inline:{1=z}}", "pipemap:{inline:{x=a}, inline:{b=z}}",
    'inline:{ {"a a"@example.com = "b b"@example.com}, { x = y } }', "inline:{ { a b = c } }",
])
def test_inline_static_composites(spec, tmp_path):
    # postmap pauses about a second before a fatal exit: ask a bad spec only once.
    if "fatal:" in same(["-q", "x", spec], cwd=tmp_path).stderr:
        return
    for key in ("x", "foo", "FOO", "k2", "a", "b", "y", '"a a"@example.com'):
        same(["-q", key, spec], cwd=tmp_path)
    same(["-q", "-", spec], stdin="x\nfoo\nk2\na\ny\n", cwd=tmp_path)


def test_dump_inline_and_unsupported(tmp_path):
    # Postfix lists an inline table in its hash-table order; compare as sets.
    ours = fastpost_map("-s", "inline:{b=1,a=2,C=3}", cwd=tmp_path)
    theirs = postmap("-s", "inline:{b=1,a=2,C=3}", cwd=tmp_path)
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines())
    assert ours.returncode == theirs.returncode == 0
    same(["-s", "static:x"], cwd=tmp_path)
    same(["-s", "cidr:" + str(DATA / "basic.cidr")], cwd=tmp_path)


def test_delete_and_incremental(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "t").write_text("Foo bar\nbaz qux\n")
    postmap("lmdb:t", cwd=tmp_path / "a")
    fastpost_map("lmdb:t", cwd=tmp_path / "b")
    steps = [(["-d", "FOO", "lmdb:t"], None), (["-d", "foo", "lmdb:t"], None),
             (["-i", "lmdb:t"], "New val\nbaz replaced\n"),
             (["-d", "-", "lmdb:t"], "nothere\nnew\n"), (["-d", "-", "lmdb:t"], "nothere\n")]
    for args, stdin in steps:
        a = postmap(*args, stdin=stdin, cwd=tmp_path / "a")
        b = fastpost_map(*args, stdin=stdin, cwd=tmp_path / "b")
        assert (b.stdout, b.returncode) == (a.stdout, a.returncode), args
        assert (postmap("-s", "lmdb:t", cwd=tmp_path / "a").stdout
                == fastpost_map("-s", "lmdb:t", cwd=tmp_path / "b").stdout), args


def test_usage_errors(tmp_path):
    for args in (["-Z"], [], ["-q", "a", "-s", "lmdb:x"], ["-q", "a", "lmdb:missing"],
                 ["-c", str(tmp_path / "nothere"), "-q", "x", "inline:{x=y}"]):
        ours = fastpost_map(*args, cwd=tmp_path)
        theirs = postmap(*args, cwd=tmp_path)
        assert (ours.stdout, ours.returncode) == (theirs.stdout, theirs.returncode), args
        assert "fatal:" in ours.stderr


def test_header_and_body_queries(tmp_path):
    (tmp_path / "hb.regexp").write_text(
        "/^subject:.*world/ SUBJ-FOLDED\n/^subject:/ SUBJ\n/foo/ FOOB\n/^From/ FROM\n")
    msg = "Subject: hello\n world\nFrom: x\nX-Foo: y\n\nbody line\nfoo\n"
    for flags in (["-h"], ["-b"], ["-h", "-b"]):
        same([*flags, "-q", "-", "regexp:hb.regexp"], stdin=msg, cwd=tmp_path)


def test_fail_table_is_an_error_not_a_miss(tmp_path):
    ours = fastpost_map("-q", "x", "fail:x", cwd=tmp_path)
    theirs = postmap("-q", "x", "fail:x", cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 1
    assert "query error" in ours.stderr and "query error" in theirs.stderr


def postalias(*args, stdin=None, cwd=None):
    return subprocess.run([need_program("postalias"), *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd)


def fastpost_alias(*args, stdin=None, cwd=None, verb="alias"):
    return subprocess.run([sys.executable, "-m", "fastpost", verb, *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd)


def test_aliases_build_and_query(tmp_path):
    src = (DATA / "basic.aliases").read_text()
    (tmp_path / "theirs").write_text(src)
    (tmp_path / "ours").write_text(src)
    assert postalias("lmdb:theirs", cwd=tmp_path).returncode == 0
    built = fastpost_alias("lmdb:ours", cwd=tmp_path)
    assert built.returncode == 0 and "need name:value pair" in built.stderr
    # postalias adds NIS YP_* entries (a timestamp); fastpost does not.
    theirs = [x for x in postalias("-s", "lmdb:theirs", cwd=tmp_path).stdout.splitlines()
              if not x.startswith("YP_")]
    assert fastpost_alias("-s", "lmdb:ours", cwd=tmp_path).stdout.splitlines() == theirs
    keys = "postmaster\nPOSTMASTER\nfoo\nq\nx y\n@\nmulti\nroot\nmissing\n"
    expect = postalias("-q", "-", "lmdb:theirs", stdin=keys, cwd=tmp_path)
    for tool, name in ((fastpost_alias, "lmdb:ours"), (postalias, "lmdb:ours"),
                       (fastpost_alias, "lmdb:theirs")):
        got = tool("-q", "-", name, stdin=keys, cwd=tmp_path)
        assert (got.stdout, got.returncode) == (expect.stdout, expect.returncode), name
    for key in ("foo", "nothere"):
        a = postalias("-q", key, "lmdb:theirs", cwd=tmp_path)
        b = fastpost_alias("-q", key, "lmdb:ours", cwd=tmp_path)
        assert (a.stdout, a.returncode) == (b.stdout, b.returncode)


def test_newaliases_builds_every_alias_database(tmp_path):
    (tmp_path / "aliases").write_text("postmaster: root\n")
    (tmp_path / "more").write_text("abuse: postmaster\n")
    (tmp_path / "main.cf").write_text(
        f"alias_database = hash:{tmp_path}/aliases, lmdb:{tmp_path}/more\n")
    out = fastpost_alias("-c", str(tmp_path), verb="newaliases")
    assert out.returncode == 0, out.stderr
    assert postalias("-q", "postmaster", f"lmdb:{tmp_path}/aliases").stdout == "root\n"
    assert postalias("-q", "abuse", f"lmdb:{tmp_path}/more").stdout == "postmaster\n"
    assert not (tmp_path / "aliases.db").exists()


@pytest.mark.parametrize("type_", ["texthash", "lmdb"])
def test_non_utf8_input_and_keys(type_, tmp_path):
    """Lines that are not UTF-8 are ignored; such query keys are not found (smtputf8)."""
    src = (b"crlf value\r\nhash val # not a comment\r\n  # indented comment\r\n"
           b"sp\t \tmixed blanks  \r\n\xff\xfe bin\nK\xc3\x89Y v\n")
    keys = b"crlf\nhash\nsp\nk\xc3\xa9y\nK\xc3\x89Y\n\xff\xfe\n"
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "t").write_bytes(src)
    built = b""
    if type_ == "lmdb":
        subprocess.run([need_program("postmap"), "lmdb:t"], cwd=tmp_path / "a",
                       capture_output=True)
        built = subprocess.run([sys.executable, "-m", "fastpost", "map", "lmdb:t"],
                               cwd=tmp_path / "b", capture_output=True).stderr
    theirs = subprocess.run([need_program("postmap"), "-q", "-", f"{type_}:t"], input=keys,
                            capture_output=True, cwd=tmp_path / "a")
    ours = subprocess.run([sys.executable, "-m", "fastpost", "map", "-q", "-", f"{type_}:t"],
                          input=keys, capture_output=True, cwd=tmp_path / "b")
    assert (ours.stdout, ours.returncode) == (theirs.stdout, theirs.returncode)
    assert b'non-UTF-8 input "?? bin"' in built + ours.stderr
    assert b'non-UTF-8 key "??"' in ours.stderr
