"""`fastpost check` refuses an smtpd service that Postfix's smtpd would refuse to run:
no working relay restriction, or a restriction class without a definition (each
smtpd service with its own -o overrides)."""

from policy.pfx import free_port


RELAY_RULE = ("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, "
              "specify at least one working instance of: reject_unauth_destination, "
              "defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains")


def test_check_refuses_an_open_relay_service(fastpost_instance):
    p0, p1, p2 = free_port(), free_port(), free_port()
    inst = fastpost_instance(master_cf=(
        f"127.0.0.1:{p0} inet n - n - - smtpd\n"
        f"127.0.0.1:{p1} inet n - n - - smtpd -o smtpd_relay_restrictions=permit_mynetworks,"
        "reject_unauth_destination -o smtpd_recipient_restrictions=\n"
        f"127.0.0.1:{p2} inet n - n - - smtpd -o smtpd_relay_restrictions=permit "
        "-o smtpd_recipient_restrictions=permit_mynetworks,warn_if_reject,"
        "reject_unauth_destination\n"))
    result = inst.command("check")
    assert result.returncode == 1
    master_cf = inst.etc / "master.cf"
    assert f"fatal: {master_cf}, line 3: service 127.0.0.1:{p2}/inet: {RELAY_RULE}" \
        in result.stderr, result.stderr
    assert "line 1:" not in result.stderr and "line 2:" not in result.stderr
    start = inst.command("start")
    assert start.returncode == 1 and "integrity check failed" in start.stderr


def test_check_refuses_an_undefined_restriction_class(fastpost_instance):
    port = free_port()
    inst = fastpost_instance(master_cf=f"127.0.0.1:{port} inet n - n - - smtpd\n",
                             main_cf={"smtpd_restriction_classes": "friends"})
    result = inst.command("check")
    assert result.returncode == 1
    assert f"service 127.0.0.1:{port}/inet: restriction class `friends' needs a definition" \
        in result.stderr, result.stderr


def test_check_accepts_the_default_smtpd(fastpost_instance):
    inst = fastpost_instance(master_cf=f"127.0.0.1:{free_port()} inet n - n - - smtpd\n")
    result = inst.command("check")
    assert result.returncode == 0, result.stderr
