"""The smtp client's SASL mechanism choice and option checks (fastpost.daemons.smtp.sasl)."""

import pytest

from fastpost.daemons.smtp.sasl import SaslClient, choose
from fastpost.mail.config import Config, ConfigError

NOPLAIN = frozenset({"noplaintext", "noanonymous"})


@pytest.mark.parametrize("offered,options,filt,want", [
    (["PLAIN", "LOGIN", "CRAM-MD5"], frozenset({"noanonymous"}), (), "CRAM-MD5"),
    (["LOGIN", "PLAIN"], frozenset({"noanonymous"}), (), "PLAIN"),
    (["login"], frozenset(), (), "LOGIN"),
    (["PLAIN", "LOGIN"], NOPLAIN, (), None),                  # Postfix's default options
    (["PLAIN", "CRAM-MD5"], frozenset({"nodictionary"}), (), None),
    (["PLAIN", "CRAM-MD5"], frozenset(), ("login",), None),   # the filter leaves nothing
    (["SCRAM-SHA-256", "GSSAPI"], frozenset(), (), None),     # not built in
    (["PLAIN", "CRAM-MD5"], frozenset({"mutual_auth"}), (), None),
])
def test_choose(offered, options, filt, want):
    assert choose(offered, options, filt) == want


def test_off_unless_enabled_and_unknown_options_are_fatal(tmp_path):
    (tmp_path / "main.cf").write_text("")
    assert SaslClient.from_config(Config(str(tmp_path)), lmtp=False) is None
    (tmp_path / "main.cf").write_text("smtp_sasl_auth_enable = yes\n"
                                      "smtp_sasl_password_maps = inline:{x=a:b}\n"
                                      "smtp_sasl_security_options = noanonymous, nosuchthing\n")
    with pytest.raises(ConfigError, match="main.cf, line 3: unknown smtp_sasl_security_options"):
        SaslClient.from_config(Config(str(tmp_path)), lmtp=False)
    (tmp_path / "main.cf").write_text("lmtp_sasl_auth_enable = yes\n"
                                      "lmtp_sasl_password_maps = inline:{x=a:b}\n"
                                      "lmtp_sasl_type = dovecot\n")
    with pytest.raises(ConfigError, match="unsupported SASL client implementation"):
        SaslClient.from_config(Config(str(tmp_path)), lmtp=True)
