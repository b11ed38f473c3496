"""master.cf entries resolved into what the master runs (no processes started)."""

import socket

import pytest

from fastpost.mail.config import Config, ConfigError
from fastpost.mail.mastercf import parse_entry
from fastpost.master.listen import Endpoint, ListenError, inet_endpoints, resolve_port
from fastpost.master.master import Master
from fastpost.master.services import is_disabled, module_name, resolve
from fastpost.server.lifecycle import UsageError, parse_args


def cfg(**values):
    text = "".join(f"{k} = {v}\n" for k, v in values.items())
    return Config("/nonexistent", text=text)


def test_module_names():
    assert module_name("smtpd") == "fastpost.daemons.smtpd"
    assert module_name("trivial-rewrite") == "fastpost.daemons.trivial_rewrite"
    assert module_name("testdaemons.echo") == "testdaemons.echo"


def test_child_argv_and_limits():
    entry = parse_entry("submission inet n - y - 1 postlogd -o syslog_name=x/submission "
                        "-o { smtpd_banner = a b c }", "master.cf", 7)
    spec = resolve(entry, cfg(default_process_limit="42"), path="master.cf", verbose=2,
                   foreground=True)
    assert spec.argv == ["postlogd", "-n", "submission", "-t", "inet", "-u", "-c", "-l",
                         "-s", str(len(spec.endpoints)), "-v", "-v",
                         "-o", "fastpost_foreground_log=yes",
                         "-o", "syslog_name=x/submission", "-o", "smtpd_banner = a b c"]
    assert spec.maxproc == 1 and spec.where == "master.cf, line 7"
    opts = parse_args(spec.argv)
    assert opts.overrides == {"fastpost_foreground_log": "yes", "syslog_name": "x/submission",
                              "smtpd_banner": "a b c"}
    assert opts.chroot and opts.unprivileged and opts.solitary and opts.verbose == 2
    default = resolve(parse_entry("x unix - n n - - postlogd"), cfg(default_process_limit="42"),
                      path="m")
    assert default.maxproc == 42 and "-u" not in default.argv and "-c" not in default.argv
    assert default.endpoints == [Endpoint("unix", ("private/x",))]
    unlimited = resolve(parse_entry("x fifo n - n 60? 0 postlogd"), cfg(), path="m")
    assert "-z" in unlimited.argv and unlimited.endpoints == [Endpoint("fifo", ("public/x",))]
    assert unlimited.wakeup == 60 and unlimited.entry.wakeup_conditional


def test_parse_args_errors():
    with pytest.raises(UsageError, match="expected name=value"):
        parse_args(["d", "-o", "novalue"])
    with pytest.raises(UsageError):
        parse_args(["d", "-q"])


def test_resolution_errors_name_the_line():
    with pytest.raises(ConfigError, match='m, line 3: cannot load daemon "nope": no module'):
        resolve(parse_entry("x unix - - n - - nope", "m", 3), cfg(), path="m")
    with pytest.raises(ConfigError, match="line 4: service type pass is not supported"):
        resolve(parse_entry("x pass - - n - - postlogd", "m", 4), cfg(), path="m")
    with pytest.raises(ConfigError, match="line 5: unknown service: nosuchport/tcp"):
        resolve(parse_entry("nosuchport inet n - n - - postlogd", "m", 5), cfg(), path="m")


def test_inet_endpoints():
    assert resolve_port("smtp") == 25 and resolve_port("2525") == 2525
    with pytest.raises(ListenError):
        resolve_port("70000")
    got = inet_endpoints("", "25", ["all"], ["ipv4"])
    assert got == [Endpoint("inet", ("0.0.0.0", 25))]
    got = inet_endpoints("", "25", ["loopback-only"], ["ipv4"])
    assert got == [Endpoint("inet", ("127.0.0.1", 25))]
    got = inet_endpoints("127.0.0.2", "smtp", ["all"], ["ipv4"])
    assert got == [Endpoint("inet", ("127.0.0.2", 25))]
    got = inet_endpoints("", "25", ["127.0.0.1", "localhost"], ["ipv4"])
    assert got == [Endpoint("inet", ("127.0.0.1", 25))]  # duplicates collapse
    with pytest.raises(ListenError, match='bad inet_protocols value "ipx"'):
        inet_endpoints("", "25", ["all"], ["ipx"])
    if socket.has_ipv6:
        got = inet_endpoints("", "25", ["all"], ["ipv6"])
        assert got == [Endpoint("inet", ("::", 25))]


def test_master_service_disable(tmp_path):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}\n"
                                      "master_service_disable = inet, b/unix\n")
    (tmp_path / "master.cf").write_text("a unix - - n - - postlogd\n"
                                        "b unix - - n - - postlogd\n"
                                        "2525 inet n - n - - postlogd\n")
    assert is_disabled(parse_entry("b unix - - n - - x"), ["b/unix"])
    assert not is_disabled(parse_entry("b fifo - - n - - x"), ["b/unix"])
    _, specs = Master(str(tmp_path)).load()
    assert [s.key for s in specs] == ["a/unix"]
