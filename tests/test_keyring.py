"""The API key through a real Secret Service: gnome-keyring under a private D-Bus session."""

import pytest

from .conftest import TEST_KEY, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.keyring]


def test_set_key_send_delete_roundtrip(secret_service, sandbox):
    env = {**secret_service.env, "CLOUDCHAT_BASE_URL": sandbox.base_url}
    proc = run_cli("-p", "shop", "config", "set-key", env=env, input=TEST_KEY + "\n")
    assert proc.returncode == 0, proc.stderr
    assert "keyring (keyring.backends.SecretService.Keyring" in proc.stderr
    assert TEST_KEY not in proc.stdout + proc.stderr

    doctor = run_cli("-p", "shop", "config", "doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout
    assert "SecretService" in doctor.stdout and "sk_test_…WXYZ from keyring" in doctor.stdout

    sent = run_cli("-p", "shop", "send", "6281234567890", "via keyring", "--json", env=env)
    assert sent.returncode == 0, sent.stderr
    assert sandbox.records()[-1]["request"]["text"] == "via keyring"

    # The key really is in the Secret Service, not in a file of ours.
    import subprocess

    lookup = subprocess.run(["secret-tool", "lookup", "service", "cloudchat-cli"], env=env,
                            capture_output=True, text=True) if _has("secret-tool") else None
    if lookup is not None:
        assert lookup.stdout.strip() == TEST_KEY

    assert run_cli("-p", "shop", "config", "delete-key", env=env).returncode == 0
    gone = run_cli("-p", "shop", "send", "6281234567890", "again", env=env)
    assert gone.returncode == 3 and "no entry for profile 'shop'" in gone.stderr


def test_profiles_have_separate_keys(secret_service, sandbox):
    env = {**secret_service.env, "CLOUDCHAT_BASE_URL": sandbox.base_url}
    assert run_cli("-p", "a", "config", "set-key", env=env, input=TEST_KEY).returncode == 0
    proc = run_cli("-p", "b", "config", "set-key", env=env, input="sk_test_other_profile_0000")
    assert proc.returncode == 0
    assert run_cli("-p", "a", "send", "6281234567890", "A", env=env).returncode == 0
    assert run_cli("-p", "b", "send", "6281234567890", "B", env=env).returncode == 0
    keys = [r["key"] for r in sandbox.records()]
    assert keys[0] != keys[1]


def _has(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
