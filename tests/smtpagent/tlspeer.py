"""A STARTTLS-capable SMTP server for the agent's TLS tests, and the certificates.

    ca = make_ca(dir)                                  # a test CA (cert + key files)
    cert, key = make_cert(dir, ca, ["mx.tls.test"])    # a server certificate it signed
    with TlsServer(cert, key) as srv:                  # fastpost's smtpd, stand-alone
        srv.port, srv.messages()                       # files its test sink wrote

The server is fastpost's smtpd run stand-alone (fastpost.daemons.smtpd.standalone)
with smtpd_tls_security_level = may: C Postfix's smtp-sink has no STARTTLS.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _write(path: Path, key, cert) -> None:
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory, name: str = "fastpost test CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = Path(directory) / name.replace(" ", "-")
    _write(path, key, cert)
    return key, cert, str(path.with_suffix(".pem"))


def make_cert(directory, ca, names: list[str]):
    ca_key, ca_cert, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    path = Path(directory) / f"server-{names[0]}"
    _write(path, key, cert)
    return str(path.with_suffix(".pem")), str(path.with_suffix(".key"))


class TlsServer:
    def __init__(self, cert: str, key: str, extra: str = ""):
        self.dir = Path(tempfile.mkdtemp(prefix="tls-peer-"))
        (self.dir / "etc").mkdir()
        (self.dir / "spool").mkdir()
        (self.dir / "etc" / "main.cf").write_text(
            "compatibility_level = 3.6\n"
            "myhostname = mx.tls.test\n"
            "smtpd_tls_security_level = may\n"
            f"smtpd_tls_cert_file = {cert}\n"
            f"smtpd_tls_key_file = {key}\n"
            "mynetworks = 127.0.0.0/8\n"
            f"queue_directory = {self.dir}/queue\n"
            f"data_directory = {self.dir}/data\n" + extra)
        port_file = self.dir / "port"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastpost.daemons.smtpd.standalone", "-c",
             str(self.dir / "etc"), "-l", "127.0.0.1:0", "-d", str(self.dir / "spool"),
             "--port-file", str(port_file), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"smtpd did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def messages(self) -> list[bytes]:
        files = sorted((self.dir / "spool").glob("*.msg"), key=lambda p: p.stat().st_mtime_ns)
        return [p.read_bytes() for p in files]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
