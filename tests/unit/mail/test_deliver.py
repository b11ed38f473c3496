"""Delivery protocol messages and the status log line."""

import pytest

from fastpost.mail import deliver as D


@pytest.mark.parametrize(
    "seconds,text",
    [(0, "0"), (0.003, "0"), (0.005, "0.01"), (0.07, "0.07"), (0.0456, "0.05"), (0.22, "0.22"),
     (0.456, "0.46"), (1.2, "1.2"), (2.56, "2.6"), (9.96, "10"), (12.3, "12"), (109.4, "109"),
     (1.0, "1")],
)
def test_format_delay(seconds, text):
    assert D.format_delay(seconds) == text


def test_request_roundtrip_and_errors():
    req = D.DeliveryRequest("3F1A21C0A35", "smtp", "example.net", "a@b.example",
                            [D.Recipient(120, "x@example.net", "X@example.net", D.NOTIFY_FAILURE)],
                            1000.0, 1001.5, size=1530, client={"name": "h", "addr": "192.0.2.1"})
    back = D.DeliveryRequest.from_attrs(req.to_attrs())
    assert back.recipients == req.recipients and back.active_time == 1001.5
    assert back.client == {"name": "h", "addr": "192.0.2.1"}
    with pytest.raises(ValueError, match="no recipients"):
        D.DeliveryRequest.from_attrs({**req.to_attrs(), "recipients": []})
    with pytest.raises(ValueError, match="bad status"):
        D.DeliveryResult.from_attrs({"results": [{"offset": 1, "status": "lost", "dsn": "2.0.0"}]})


def test_status_line():
    r = D.Recipient(1, "bob@example.net", "postmaster@example.org")
    res = D.RecipientResult(1, D.SENT, "2.0.0", "250 2.0.0 Ok: queued as 4A7B",
                            "mx.example.net[198.51.100.5]:25")
    line = D.format_status_line("3F1A21C0A35", r, res, arrival_time=100.0, active_time=100.05,
                                request_time=100.06, conn_time=100.66, done_time=101.2)
    assert line == ("3F1A21C0A35: to=<bob@example.net>, orig_to=<postmaster@example.org>, "
                    "relay=mx.example.net[198.51.100.5]:25, delay=1.2, delays=0.05/0.01/0.6/0.54, "
                    "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4A7B)")
