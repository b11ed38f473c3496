"""fastpost tls new-server-key / new-server-cert: files, modes, names, key reuse."""

import os
import ssl
import stat

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fastpost.cli import main as cli


def certs(directory, prefix="cert-"):
    return sorted(p for p in os.listdir(directory) if p.startswith(prefix))


def test_new_server_key(tmp_path, capsys):
    (tmp_path / "main.cf").write_text("myhostname = mx.example.test\n")
    assert cli.main(["fastpost", "-c", str(tmp_path), "tls", "new-server-key"]) == 0
    out = capsys.readouterr().out
    (cert_name,) = certs(tmp_path)
    (key_name,) = certs(tmp_path, "key-")
    assert stat.S_IMODE(os.stat(tmp_path / key_name).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / cert_name).read_bytes())
    assert cert.subject.rfc4514_string() == "CN=mx.example.test"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx.example.test"]
    assert f"smtpd_tls_cert_file = {tmp_path / cert_name}" in out
    # The pair loads into a server context, as smtpd will load it.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / cert_name), str(tmp_path / key_name))


def test_new_server_cert_keeps_the_deployed_key(tmp_path):
    from fastpost.cli.tls import new_server_files

    key, _ = new_server_files(str(tmp_path), ["old.example"], algorithm="ecdsa")
    (tmp_path / "main.cf").write_text(f"smtpd_tls_eckey_file = {key}\n")
    os.rename(key, tmp_path / "deployed.pem")
    (tmp_path / "main.cf").write_text(f"smtpd_tls_eckey_file = {tmp_path / 'deployed.pem'}\n")
    import time
    time.sleep(1.1)  # the file names carry the time to the second
    assert cli.main(["fastpost", "-c", str(tmp_path), "tls", "new-server-cert", "-a", "ecdsa",
                     "new.example", "alt.example"]) == 0
    newest = certs(tmp_path, "eccert-")[-1]
    cert = x509.load_pem_x509_certificate((tmp_path / newest).read_bytes())
    old = serialization.load_pem_private_key((tmp_path / "deployed.pem").read_bytes(), None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.PEM, pub) == \
        old.public_key().public_bytes(serialization.Encoding.PEM, pub)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["new.example", "alt.example"]


def test_errors(tmp_path, capsys):
    assert cli.main(["fastpost", "tls"]) == 64
    assert cli.main(["fastpost", "-c", str(tmp_path), "tls", "new-server-key", "-a", "dsa"]) == 1
    assert cli.main(["fastpost", "-c", str(tmp_path), "tls", "new-server-key", "-a", "ecdsa",
                     "-b", "bogus"]) == 1
    assert "fatal: unsupported EC curve: bogus" in capsys.readouterr().err
