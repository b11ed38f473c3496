"""The parameter table: per-transport parameters, computed defaults, unsupported ones."""

import ipaddress

import pytest

from fastpost.mail import mynetworks, params
from fastpost.mail.config import Config, ConfigError
from fastpost.util.ifaddrs import interface_addresses


def cfg(text="", **overrides):
    return Config("/nonexistent", overrides, text=text)


def test_every_row_is_well_formed():
    kinds = {params.STR, params.BOOL, params.INT, params.TIME, params.LIST, params.MAPS}
    for name, decl in params.table().items():
        assert decl.name == name
        assert decl.kind in kinds, name
        if decl.kind == params.TIME:
            assert decl.unit in params.TIME_UNITS, name
        if decl.min is not None and decl.max is not None:
            assert decl.min <= decl.max, name


def test_numeric_defaults_fit_their_type_and_range():
    c = cfg()
    for name, decl in params.table().items():
        if decl.kind in (params.INT, params.TIME, params.BOOL):
            c.typed(name)  # raises ConfigError when the default does not fit


def test_service_params_for_delivery_agents_only():
    names = [p.name for p in params.service_params("relay", "smtp")]
    assert "relay_destination_concurrency_limit" in names
    assert "relay_time_limit" not in names
    assert len(names) == len(params.TRANSPORT_SUFFIXES)
    assert [p.name for p in params.service_params("spawner", "spawn")] == ["spawner_time_limit"]
    assert params.service_params("discard", "discard") == []
    assert params.service_params("x", "/usr/lib/postfix/sbin/pipe") == []
    # the static table's rows win: local_destination_concurrency_limit is built in
    local = {p.name for p in params.service_params("local", "local")}
    assert "local_destination_concurrency_limit" not in local
    assert "local_delivery_slot_cost" in local


def test_transport_parameter_defaults_follow_the_global_ones():
    c = cfg("default_destination_concurrency_limit = 7\ncommand_time_limit = 2m\n"
            "relay_destination_recipient_limit = 3\n")
    assert c.get_int("relay_destination_concurrency_limit") == 7
    assert c.get_int("relay_destination_recipient_limit") == 3
    assert c.get_time("maildrop_time_limit") == 120
    assert c.get_int("local_destination_concurrency_limit") == 2  # built-in row


def test_myhostname_and_mydomain_follow_each_other(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "box")
    assert cfg().get("myhostname") == "box.localdomain"
    assert cfg().get("mydomain") == "localdomain"
    assert cfg("mydomain = example.org").get("myhostname") == "box.example.org"
    assert cfg("myhostname = a.b.example").get("mydomain") == "b.example"
    monkeypatch.setattr("socket.gethostname", lambda: "mx.example.net")
    assert cfg().get("mydomain") == "example.net"


def test_mynetworks_styles_from_the_interfaces():
    ifaces = interface_addresses()
    assert ipaddress.ip_interface("127.0.0.1/8") in ifaces
    host = cfg("mynetworks_style = host").get("mynetworks").split()
    assert "127.0.0.1/32" in host
    subnet = cfg("mynetworks_style = subnet").get("mynetworks").split()
    assert "127.0.0.0/8" in subnet
    v4 = cfg("mynetworks_style = class\ninet_protocols = ipv4").get("mynetworks").split()
    assert "127.0.0.0/8" in v4 and not any(w.startswith("[") for w in v4)
    # compatibility level 2 and later: host style
    assert cfg("compatibility_level = 2").get("mynetworks").split() == host
    assert cfg("mynetworks = 10.0.0.0/8").get("mynetworks") == "10.0.0.0/8"


def test_class_networks():
    assert mynetworks._class_network(ipaddress.IPv4Address("10.1.2.3")) == "10.0.0.0/8"
    assert mynetworks._class_network(ipaddress.IPv4Address("172.16.9.9")) == "172.16.0.0/16"
    assert mynetworks._class_network(ipaddress.IPv4Address("192.0.2.9")) == "192.0.2.0/24"


def test_bad_mynetworks_style_names_the_value():
    with pytest.raises(ConfigError, match='unknown mynetworks mask style value "bogus"'):
        cfg("mynetworks_style = bogus").get("mynetworks")


def test_unsupported_settings_name_file_and_line():
    c = cfg("myhostname = x\npostscreen_dnsbl_sites = zen.example\n\nsmtpd_milters = inet:1\n",
            lmtp_address_verify_target="data")
    assert params.unsupported_settings(c) == [
        ("postscreen_dnsbl_sites", "/nonexistent/main.cf, line 2"),
        ("smtpd_milters", "/nonexistent/main.cf, line 4"),
        ("lmtp_address_verify_target", "-o lmtp_address_verify_target"),
    ]
    assert params.unsupported_settings(cfg("myhostname = x\n")) == []


def test_compatibility_level_defaults():
    assert cfg().get("append_dot_mydomain") == "yes"
    assert cfg("compatibility_level = 1").get("append_dot_mydomain") == "no"
    assert cfg().get_list("relay_domains") == cfg().get_list("mydestination")
    assert cfg("compatibility_level = 3.6").get("relay_domains") == ""
    assert cfg("compatibility_level = 3.6").get_bool("smtputf8_enable") is True
    assert cfg("compatibility_level = 3.10").get("smtpd_tls_fingerprint_digest") == "sha256"


def test_unsupported_settings_from_a_master_cf_service():
    base = cfg("myhostname = x\n")
    service = base.with_overrides({"smtpd_milters": "inet:127.0.0.1:8891", "syslog_name": "s"},
                                  origin="/etc/fastpost/master.cf, line 12")
    assert params.unsupported_settings(service) == [
        ("smtpd_milters", "/etc/fastpost/master.cf, line 12: -o smtpd_milters")]
    assert service.get("myhostname") == "x" and base.get("syslog_name") != "s"
