"""Webhook secrets as people write them: spaces, commas, '=', non-ASCII — never split.

Every signature is checked against implementations we did not write: openssl, Python's hmac
and (when installed) Node's crypto.
"""

import hashlib
import hmac
import re
import shutil
import subprocess

import pytest

from .conftest import run_cli

BODY = b"Hello, World!"
GITHUB_VECTOR = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SECRETS = [
    "It's a Secret to Everybody",
    "abc,def",
    "whsec_with spaces in it",
    "key=value==",
    "rahasia-ñandú-秘密-🔑",
]


def openssl_hmac(secret: str, body: bytes) -> str:
    proc = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", secret], input=body,
                          capture_output=True, check=True)
    return re.search(rb"= ?([0-9a-f]{64})\s*$", proc.stdout).group(1).decode()


def node_hmac(secret: str, body: bytes) -> str:
    script = ("const c=require('crypto');let d=[];process.stdin.on('data',x=>d.push(x));"
              "process.stdin.on('end',()=>process.stdout.write(c.createHmac('sha256',"
              "process.env.S).update(Buffer.concat(d)).digest('hex')))")
    proc = subprocess.run(["node", "-e", script], input=body, capture_output=True, check=True,
                          env={"S": secret, "PATH": "/usr/bin:/bin:/usr/local/bin"})
    return proc.stdout.decode()


def references(secret: str) -> set[str]:
    found = {hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()}
    if shutil.which("openssl"):
        found.add(openssl_hmac(secret, BODY))
    if shutil.which("node"):
        found.add(node_hmac(secret, BODY))
    return found


@pytest.mark.e2e
def test_github_vector_matches_the_references():
    assert references("It's a Secret to Everybody") == {GITHUB_VECTOR}


@pytest.mark.e2e
@pytest.mark.parametrize("secret", SECRETS)
def test_sign_and_verify_agree_with_openssl_and_hmac(tmp_path, env, secret):
    (expected,) = references(secret)
    body = tmp_path / "body"
    body.write_bytes(BODY)
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    from_file = run_cli("webhook", "sign", str(body), "--secret-file", str(secret_file), env=env)
    assert (from_file.returncode, from_file.stdout.strip()) == (0, expected), from_file.stderr
    senv = {**env, "CLOUDCHAT_WEBHOOK_SECRET": secret}
    from_env = run_cli("webhook", "sign", str(body), env=senv)
    assert (from_env.returncode, from_env.stdout.strip()) == (0, expected), from_env.stderr
    verified = run_cli("webhook", "verify", str(body), "-s", f"sha256={expected}", env=senv)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "valid signature" in verified.stdout
    assert secret not in verified.stdout + verified.stderr


@pytest.mark.e2e
def test_rotation_by_lines_and_by_repeating_secret_file(tmp_path, env):
    old, new = "old secret, with comma", "new secret = with spaces"
    body = tmp_path / "body"
    body.write_bytes(BODY)
    (signature,) = references(new)
    files = []
    for name, value in (("old", old), ("new", new)):
        path = tmp_path / name
        path.write_text(value + "\r\n")
        path.chmod(0o600)
        files += ["--secret-file", str(path)]
    proc = run_cli("webhook", "verify", str(body), "-s", signature, *files, env=env)
    assert proc.returncode == 0 and "secret 2 of 2" in proc.stdout, proc.stdout + proc.stderr
    both = tmp_path / "both"
    both.write_text(f"{old}\n\n{new}\n")
    both.chmod(0o600)
    proc = run_cli("webhook", "verify", str(body), "-s", signature, "--secret-file", str(both),
                   env=env)
    assert proc.returncode == 0 and "secret 2 of 2" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("webhook", "verify", str(body), "-s", signature,
                   env={**env, "CLOUDCHAT_WEBHOOK_SECRET": f"{old}\n{new}"})
    assert proc.returncode == 0 and "secret 2 of 2" in proc.stdout, proc.stdout + proc.stderr
    # A comma is not a separator: neither half of "old secret, with comma" is a secret.
    (half,) = references("old secret")
    proc = run_cli("webhook", "verify", str(body), "-s", half,
                   env={**env, "CLOUDCHAT_WEBHOOK_SECRET": old})
    assert proc.returncode == 1


def test_stored_secret_keeps_its_spaces(tmp_path, env):
    secret = "It's a Secret to Everybody"
    proc = run_cli("config", "set-webhook-secret", "--insecure-storage", input=secret + "\n",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    body = tmp_path / "body"
    body.write_bytes(BODY)
    proc = run_cli("webhook", "sign", str(body), env=env)
    assert proc.stdout.strip() == GITHUB_VECTOR, proc.stderr


def test_a_control_character_in_a_secret_is_refused(tmp_path, env):
    proc = run_cli("webhook", "sign", "-", input=b"x",
                   env={**env, "CLOUDCHAT_WEBHOOK_SECRET": "abc\x01def"})
    assert proc.returncode == 2 and "control characters" in proc.stderr
    assert "abc" not in proc.stderr
