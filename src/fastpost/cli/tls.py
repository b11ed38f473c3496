"""``fastpost tls``: make a private key and a self-signed server certificate.

Postfix counterpart: postfix-tls(1) (``postfix tls new-server-key``,
``new-server-cert``), src/postfix/postfix-tls-script.

    fastpost [-c config_dir] tls new-server-key  [-a rsa|ecdsa] [-b bits|curve] [hostname...]
    fastpost [-c config_dir] tls new-server-cert [-a rsa|ecdsa] [-b bits|curve] [hostname...]

new-server-key makes a new private key and a self-signed certificate for it;
new-server-cert does the same but keeps the private key already configured for that
algorithm (smtpd_tls_key_file for rsa, smtpd_tls_eckey_file for ecdsa), so DANE
"3 1 1" records stay valid - and makes a new key when none is configured. As with
Postfix, the files are config_directory/key-YYYYmmdd-HHMMSS.pem and
cert-YYYYmmdd-HHMMSS.pem (eckey-/eccert- for ECDSA), the first host name (default
$myhostname) is the subject and issuer CommonName and every host name is a DNS
subjectAltName, and the certificate is valid for 100 years. The command prints the
``fastpost conf -e`` line that deploys them (with smtpd_tls_security_level = may);
it does not edit main.cf itself.

Defaults: rsa with 2048 bits; ecdsa with secp256r1 (secp384r1, secp521r1 accepted).

Keys and certificates are made with the ``cryptography`` package (pyOpenSSL's
backend; pyOpenSSL >= 24 no longer builds certificate extensions, and a certificate
without subjectAltName is refused by modern clients).

Diagnostics: exit status 1 with a "fatal:" line for a bad option, an unknown curve,
or an unwritable configuration directory; 64 for a usage error.
"""

from __future__ import annotations

import datetime
import getopt
import os
import sys

from fastpost.mail.config import Config, ConfigError

USAGE = ("usage: fastpost [-c config_dir] tls new-server-key|new-server-cert "
         "[-a rsa|ecdsa] [-b bits|curve] [hostname...]")

_CURVES = ("secp256r1", "prime256v1", "secp384r1", "secp521r1")


def _fatal(text: str) -> int:
    print(f"fastpost/tls: fatal: {text}", file=sys.stderr)
    return 1


def make_key(algorithm: str = "rsa", bits: str | None = None):
    """Return a new private key (cryptography object)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "rsa":
        size = int(bits or 2048)
        if size < 1024 or size > 16384:
            raise ValueError(f"invalid RSA key size: {size}")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if algorithm == "ecdsa":
        curve = (bits or "secp256r1").lower()
        if curve not in _CURVES:
            raise ValueError(f"unsupported EC curve: {curve}")
        cls = {"secp256r1": ec.SECP256R1, "prime256v1": ec.SECP256R1,
               "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1}[curve]
        return ec.generate_private_key(cls())
    raise ValueError(f"unsupported key algorithm: {algorithm}")


def self_signed(key, hostnames: list[str], *, years: int = 100):
    """Return a self-signed certificate for ``key`` naming ``hostnames``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * years + years // 4))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: str):
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as fh:
        return serialization.load_pem_private_key(fh.read(), password=None)


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def new_server_files(config_dir: str, hostnames: list[str], *, algorithm: str = "rsa",
                     bits: str | None = None, reuse_key: str | None = None,
                     when: datetime.datetime | None = None) -> tuple[str, str]:
    """Write key and certificate files into config_dir; return (key path, cert path)."""
    from cryptography.hazmat.primitives import serialization

    key = _load_key(reuse_key) if reuse_key else make_key(algorithm, bits)
    cert = self_signed(key, hostnames)
    stamp = (when or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%d-%H%M%S")
    prefix = "ec" if algorithm == "ecdsa" else ""
    key_path = os.path.join(config_dir, f"{prefix}key-{stamp}.pem")
    cert_path = os.path.join(config_dir, f"{prefix}cert-{stamp}.pem")
    _write(key_path, _pem_key(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key_path, cert_path


def main(argv: list[str]) -> int:
    """Entry point of ``fastpost tls``; returns the exit status."""
    config_dir = None
    args = list(argv)
    if len(args) >= 2 and args[0] == "-c":
        config_dir = args[1]
        args = args[2:]
    if not args or args[0] not in ("new-server-key", "new-server-cert"):
        print(USAGE, file=sys.stderr)
        return 64
    sub = args[0]
    try:
        opts, hostnames = getopt.getopt(args[1:], "a:b:c:")
    except getopt.GetoptError as exc:
        print(f"fastpost/tls: {exc}\n{USAGE}", file=sys.stderr)
        return 64
    algorithm, bits = "rsa", None
    for opt, value in opts:
        if opt == "-a":
            algorithm = value.lower()
        elif opt == "-b":
            bits = value
        elif opt == "-c":
            config_dir = value
    if algorithm not in ("rsa", "ecdsa"):
        return _fatal(f"unsupported key algorithm: {algorithm} (use rsa or ecdsa)")
    try:
        config = Config(config_dir)
        directory = config.config_dir
        if not hostnames:
            hostnames = [config.get("myhostname")]
        reuse = None
        if sub == "new-server-cert":
            param = "smtpd_tls_eckey_file" if algorithm == "ecdsa" else "smtpd_tls_key_file"
            current = config.get(param).strip()
            if current and os.path.exists(current):
                reuse = current
        key_path, cert_path = new_server_files(directory, hostnames, algorithm=algorithm,
                                               bits=bits, reuse_key=reuse)
    except (ConfigError, OSError, ValueError) as exc:
        return _fatal(str(exc))
    cert_p, key_p = (("smtpd_tls_eccert_file", "smtpd_tls_eckey_file") if algorithm == "ecdsa"
                     else ("smtpd_tls_cert_file", "smtpd_tls_key_file"))
    print(f"New {'private key and ' if reuse is None else ''}self-signed certificate for "
          f"{', '.join(hostnames)}:")
    print(f"  key:  {key_path}")
    print(f"  cert: {cert_path}")
    print("To deploy them:")
    cflag = f"-c {directory} " if config_dir else ""
    print(f"  fastpost {cflag}conf -e '{cert_p} = {cert_path}' '{key_p} = {key_path}' "
          f"'smtpd_tls_security_level = may'")
    return 0
