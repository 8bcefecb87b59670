"""Key masking, key files, the order of sources, and what the no-key error says."""

import pytest

from cloudchat_cli.core import credentials
from cloudchat_cli.core.errors import CredentialsError


@pytest.mark.parametrize(("secret", "masked"), [
    ("sk_live_abcdefghijklmnopwxyz", "sk_live_…wxyz"),
    ("sk_test_0123456789abcdef1234", "sk_test_…1234"),
    ("whsec_0123456789abcdefABCD", "whsec_…ABCD"),
    ("sk_test_123456", "sk_test_…56"),  # short keys still show a tail …
    ("sk_test_abc123456", "sk_test_…3456"),  # … of 4 once more than 8 characters follow
    ("sk_test_abcdefgh", "sk_test_…fgh"),  # 8: fewer than half
    ("sk_live_short", "sk_live_…rt"),
    ("plainsecretvalue0000", "…0000"),
    ("tiny", "…y"),
    ("ab", "…"),
    ("sk_test_", "sk_test_…"),
])
def test_mask(secret, masked):
    assert credentials.mask(secret) == masked


@pytest.mark.parametrize("secret", ["x", "sk_test_a", "sk_test_ab", "sk_live_abcd", "abcdefgh",
                                    "sk_test_abcdefghi", "whsec_0123456789"])
def test_mask_never_shows_half_a_short_secret(secret):
    masked = credentials.mask(secret)
    prefix, _, tail = masked.partition("…")
    rest = secret[len(prefix):]
    assert secret.startswith(prefix) and rest.endswith(tail)
    assert len(tail) <= 4 and 2 * len(tail) < max(len(rest), 1)


def test_two_short_keys_can_be_told_apart():
    assert credentials.mask("sk_test_shop01") != credentials.mask("sk_test_shop02")


def test_order_file_env_credentials(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("sk_live_fromfile0000000000\n")
    keyfile.chmod(0o600)
    creds = tmp_path / "credentials.toml"
    env = {"CLOUDCHAT_NO_KEYRING": "1", "CLOUDCHAT_API_KEY": "sk_live_fromenv00000000000"}
    kind = credentials.API_KEY
    s = credentials.resolve_secret(kind, "p", file_flag=keyfile, env=env, credentials_path=creds)
    assert (s.value, s.warnings) == ("sk_live_fromfile0000000000", [])
    s = credentials.resolve_secret(kind, "p", env={**env, "CLOUDCHAT_API_KEY_FILE": str(keyfile)},
                                   credentials_path=creds)
    assert s.source.startswith("CLOUDCHAT_API_KEY_FILE")
    s = credentials.resolve_secret(kind, "p", env=env, credentials_path=creds)
    assert s.value == "sk_live_fromenv00000000000"
    credentials.store_secret(kind, "p", "sk_live_stored0000000000\n", insecure_storage=True,
                             credentials_path=creds)
    assert creds.stat().st_mode & 0o777 == 0o600
    s = credentials.resolve_secret(kind, "p", env={"CLOUDCHAT_NO_KEYRING": "1"},
                                   credentials_path=creds)
    assert (s.value, s.source) == ("sk_live_stored0000000000", f"credentials file {creds}")
    assert credentials.delete_secret(kind, "p", env=env, credentials_path=creds)
    with pytest.raises(CredentialsError):
        credentials.resolve_secret(kind, "p", env={"CLOUDCHAT_NO_KEYRING": "1"},
                                   credentials_path=creds)


def test_key_file_readable_by_others_warns_and_bad_files_fail(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("sk_live_fromfile0000000000")
    keyfile.chmod(0o644)
    s = credentials.read_secret_file(keyfile, credentials.API_KEY)
    assert "readable by other users" in s.warnings[0]
    with pytest.raises(CredentialsError, match="does not exist"):
        credentials.read_secret_file(tmp_path / "nope", credentials.API_KEY)
    with pytest.raises(CredentialsError, match="is a directory"):
        credentials.read_secret_file(tmp_path, credentials.API_KEY)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(CredentialsError, match="empty"):
        credentials.read_secret_file(tmp_path / "empty", credentials.API_KEY)
    (tmp_path / "inj").write_text("sk_live_a\r\nX-Evil: 1")
    with pytest.raises(CredentialsError, match="control characters"):
        credentials.read_secret_file(tmp_path / "inj", credentials.API_KEY)


def test_no_key_error_lists_every_source_and_fixes(tmp_path):
    with pytest.raises(CredentialsError) as info:
        credentials.resolve_secret(credentials.API_KEY, "shop", env={"CLOUDCHAT_NO_KEYRING": "1"},
                                   credentials_path=tmp_path / "c.toml")
    err = info.value
    assert err.exit_code == 3
    for source in ("--api-key-file", "CLOUDCHAT_API_KEY", "OS keyring", "credentials file"):
        assert source in err.message
    assert "CLOUDCHAT_API_KEY" in err.hint and "config set-key" in err.hint


def test_fail_backend_is_not_a_keyring(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    import keyring.core

    keyring.core._keyring_backend = None
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    backend, why = credentials.keyring_backend({})
    assert backend is None and "no keyring backend" in why


def test_null_backend_is_not_a_keyring(monkeypatch):
    import keyring
    from keyring.backends import null

    monkeypatch.setattr(keyring, "get_keyring", lambda: null.Keyring())
    backend, why = credentials.keyring_backend({})
    assert backend is None and "stores nothing" in why


def test_hung_keyring_times_out(monkeypatch):
    import threading

    import keyring

    release = threading.Event()

    class Hung:
        def get_password(self, service, user):
            release.wait(10)

    monkeypatch.setattr(keyring, "get_keyring", lambda: Hung())
    try:
        value, why = credentials.keyring_get(credentials.API_KEY, "p",
                                             {"CLOUDCHAT_KEYRING_TIMEOUT": "0.2"})
    finally:
        release.set()
    assert value is None and "did not answer" in why
