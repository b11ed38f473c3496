"""fastpost conf: the modes the differential tests cannot compare with postconf."""

import pytest

from fastpost.cli import postconf


def run(capsys, *args):
    rc = postconf.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_table_types_are_fastposts(capsys):
    rc, out, _err = run(capsys, "-m")
    assert rc == 0
    types = out.split()
    assert types == sorted(types)
    for t in ("hash", "lmdb", "cidr", "pcre", "regexp", "texthash", "inline", "static",
              "unionmap", "pipemap", "proxy", "pgsql", "mysql", "sqlite", "ldap",
              "memcache", "socketmap", "tcp"):
        assert t in types


def test_lock_types(capsys):
    assert run(capsys, "-l") == (0, "flock\nfcntl\ndotlock\n", "")


def test_unsupported_mode_says_so(capsys):
    rc, out, err = run(capsys, "-E")
    assert (rc, out) == (1, "")
    assert "not supported by fastpost" in err


def test_sasl_types(capsys):
    assert run(capsys, "-a") == (0, "dovecot\n", "")
    assert run(capsys, "-A") == (0, "", "")


def test_environment_selects_the_directory(capsys, tmp_path, monkeypatch):
    (tmp_path / "main.cf").write_text("relayhost = [x]:25\n")
    (tmp_path / "master.cf").write_text("")
    monkeypatch.setenv("FASTPOST_CONFIG", str(tmp_path))
    rc, out, _err = run(capsys, "-n")
    assert rc == 0
    assert out == f"config_directory = {tmp_path}\nrelayhost = [x]:25\n"


def test_malformed_main_cf_is_fatal_with_file_and_line(capsys, tmp_path):
    (tmp_path / "main.cf").write_text("a = 1\nthis is wrong\n")
    (tmp_path / "master.cf").write_text("")
    rc, out, err = run(capsys, "-c", str(tmp_path), "-n")
    assert (rc, out) == (1, "")
    assert f"fatal: {tmp_path}/main.cf, line 2: missing '=' after attribute name" in err


def test_reached_through_the_fastpost_command_and_the_postconf_name(capsys, tmp_path):
    from fastpost.cli import main as fastpost_main

    (tmp_path / "main.cf").write_text("relayhost = [x]:25\n")
    (tmp_path / "master.cf").write_text("")
    expected = f"config_directory = {tmp_path}\nrelayhost = [x]:25\n"
    assert fastpost_main.main(["fastpost", "-c", str(tmp_path), "conf", "-n"]) == 0
    assert capsys.readouterr().out == expected
    assert fastpost_main.main(["/usr/sbin/postconf", "-c", str(tmp_path), "-n"]) == 0
    assert capsys.readouterr().out == expected


@pytest.mark.parametrize("argv,opts,rest", [
    (["-nx", "name"], [("-n", ""), ("-x", "")], ["name"]),
    (["-c", "/d", "-o", "a=b", "x"], [("-c", "/d"), ("-o", "a=b")], ["x"]),
    (["-c/d", "-Mf"], [("-c", "/d"), ("-M", ""), ("-f", "")], []),
    (["name", "-h"], [], ["name", "-h"]),  # options end at the first name
    (["-n", "--", "-h"], [("-n", "")], ["-h"]),
    (["-#", "x"], [("-#", "")], ["x"]),
])
def test_getopt_is_posix(argv, opts, rest):
    assert postconf.getopt(argv, "c:o:nxMfh#") == (opts, rest)


@pytest.mark.parametrize("argv,message", [(["-Z"], "invalid option -- 'Z'"),
                                          (["-c"], "option requires an argument -- 'c'")])
def test_getopt_errors(argv, message):
    with pytest.raises(postconf.Fatal, match=message):
        postconf.getopt(argv, "c:n")
