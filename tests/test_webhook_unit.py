"""Signatures (computed independently), raw requests, event summaries, safe file names."""

import base64
import hashlib
import hmac
import shutil
import subprocess
import threading

import pytest

from cloudchat_cli.services.webhooks import events
from cloudchat_cli.services.webhooks.rawrequest import RawRequestError, parse_raw_request
from cloudchat_cli.services.webhooks.signature import (
    SignatureFormatError,
    parse_signature,
    sign,
    split_secrets,
    verify,
)
from cloudchat_cli.services.webhooks.store import (
    EventStore,
    Flusher,
    PendingSave,
    event_key,
    write_batch,
)
from cloudchat_cli.services.webhooks.verifying import verify_body

SECRET = "whsec_unit_0123456789abcdef"
BODY = (b'{"event":"message.received","id":"evt_123456","timestamp":1700000000,'
        b'"channel":"whatsapp","data":{"from":"6281234567890","text":"Halo"}}')


def reference(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def test_sign_matches_python_hmac_and_openssl(tmp_path):
    assert sign(SECRET, BODY) == reference(SECRET, BODY).hex()
    if shutil.which("openssl"):
        path = tmp_path / "body"
        path.write_bytes(BODY)
        out = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", SECRET, str(path)],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip().endswith(sign(SECRET, BODY))


@pytest.mark.parametrize("encode", [
    lambda d: d.hex(), lambda d: d.hex().upper(), lambda d: "sha256=" + d.hex(),
    lambda d: "SHA256=" + d.hex().upper(), lambda d: base64.b64encode(d).decode(),
    lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="), lambda d: f"  {d.hex()}\n",
])
def test_accepted_encodings(encode):
    assert verify([SECRET], BODY, encode(reference(SECRET, BODY))) == 0


def test_rotation_any_secret_matches():
    old, new = "whsec_old_000000000000", "whsec_new_111111111111"
    assert verify([old, new], BODY, sign(new, BODY)) == 1
    assert split_secrets(f"{old}\r\n{new}\n\n") == [old, new]


@pytest.mark.parametrize("secret", [
    "It's a Secret to Everybody", "abc,def", "a b", "key=value==", "rahasia-ñandú-秘密",
    " leading and trailing ", "whsec_, ,",
])
def test_a_secret_is_never_split(secret):
    assert split_secrets(secret) == [secret]
    assert split_secrets(f"{secret}\nwhsec_second") == [secret, "whsec_second"]


def test_github_published_vector():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    secrets = split_secrets("It's a Secret to Everybody\n")
    assert sign(secrets[0], b"Hello, World!") == expected
    assert verify(secrets, b"Hello, World!", "sha256=" + expected) == 0


@pytest.mark.parametrize("body", [
    BODY.replace(b"Halo", b"halo"),  # tampered
    BODY[:-1] + b" ",  # one changed byte
    BODY + b"\n",  # one added byte
    b"",  # empty body
])
def test_altered_bodies_fail(body):
    assert verify([SECRET], body, sign(SECRET, BODY)) is None


def test_wrong_secret_fails():
    assert verify(["whsec_other_000000000"], BODY, sign(SECRET, BODY)) is None


def test_empty_body_can_be_signed_and_verified():
    assert verify([SECRET], b"", sign(SECRET, b"")) == 0


@pytest.mark.parametrize("junk", ["", "sha256=", "abc", sign(SECRET, BODY)[:-2],
                                  "zz" * 32, "g" * 64, "not base64 at all!!"])
def test_malformed_signatures_are_errors(junk):
    with pytest.raises(SignatureFormatError):
        parse_signature(junk)


def test_crlf_body_is_verified_byte_exact():
    crlf = BODY.replace(b",", b",\r\n")
    assert verify([SECRET], crlf, sign(SECRET, crlf)) == 0
    assert verify([SECRET], crlf.replace(b"\r\n", b"\n"), sign(SECRET, crlf)) is None


def test_non_json_body_still_verifies():
    result = verify_body(b"plain text", sign(SECRET, b"plain text"), [SECRET])
    assert result.valid and result.event is None and "plain text" in result.summary_line


def test_max_age():
    sig = sign(SECRET, BODY)
    assert verify_body(BODY, sig, [SECRET], max_age=60, now=1700000030).valid
    stale = verify_body(BODY, sig, [SECRET], max_age=60, now=1700000100)
    assert not stale.valid and "stale" in stale.reason and "valid signature" in stale.reason


def request(body: bytes, *, chunked=False, crlf=True, sig=None) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    headers = [b"POST /webhook HTTP/1.1", b"Host: example.com",
               b"X-CloudChat-Signature: " + (sig or sign(SECRET, body)).encode(),
               b"Content-Type: application/json"]
    if chunked:
        headers.append(b"Transfer-Encoding: chunked")
        mid = len(body) // 2
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:mid], body[mid:]))
        payload += b"0\r\n\r\n"
    else:
        headers.append(b"Content-Length: %d" % len(body))
        payload = body + b"GARBAGE AFTER THE BODY"
    return nl.join(headers) + nl + nl + payload


@pytest.mark.parametrize(("chunked", "crlf"), [(False, True), (True, True), (False, False)])
def test_raw_request_parsing(chunked, crlf):
    parsed = parse_raw_request(request(BODY, chunked=chunked, crlf=crlf))
    assert parsed.body == BODY and parsed.method == "POST"
    assert verify([SECRET], parsed.body, parsed.header("x-cloudchat-signature")) == 0


@pytest.mark.parametrize(("raw", "message"), [
    (b"not http at all", "no blank line"),
    (b"GARBAGE\r\n\r\n{}", "request line"),
    (b"POST / HTTP/1.1\r\nContent-Length: 99\r\n\r\n{}", "truncated"),
    (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n{}", "not a number"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"POST / HTTP/1.1\r\nBad Header\r\n\r\n{}", "malformed header"),
])
def test_raw_request_errors(raw, message):
    with pytest.raises(RawRequestError, match=message):
        parse_raw_request(raw)


def test_summaries():
    assert events.summary_line(events.parse_body(BODY)) == (
        "message.received whatsapp  from 6281234567890: Halo  [evt_123456]")
    status = events.build_event("message.status", sets=["data.status=read",
                                                        "data.message_id=msg_9"])
    assert events.summary_line(status).startswith("message.status whatsapp  msg_9 → read")
    received = events.build_event("message.received", sets=["data.text=12345",
                                                            "data.media=null"])
    assert received["data"]["text"] == "12345" and received["data"]["media"] is None


@pytest.mark.parametrize("event_id", ["../../etc/passwd", "a\x00b", "x" * 10_000, "", None,
                                      "évènement/ü", "..", "/abs"])
def test_saved_event_names_stay_inside(tmp_path, event_id):
    store = EventStore(tmp_path / "events")
    key = event_key(event_id, b"{}")
    path = store.save(key, b"{}", {"id": event_id})
    assert path.parent == tmp_path / "events" and len(path.name) < 80
    assert [p.name for p in (tmp_path / "events").iterdir()] == [f"{key}.json"]
    assert event_key(event_id, b"{}") == key  # stable: retries find the same file
    (saved,) = store.load_all()
    assert saved.body == b"{}" and saved.meta["id"] == event_id


def test_saved_bodies_round_trip_byte_exact(tmp_path):
    store = EventStore(tmp_path)
    for i, body in enumerate([BODY.replace(b",", b",\r\n"), b"\xff\xfe binary", "é✓".encode()]):
        store.save(f"k{i}", body, {"received_at": i})
    assert [e.body for e in store.load_all()] == [BODY.replace(b",", b",\r\n"),
                                                  b"\xff\xfe binary", "é✓".encode()]


def test_write_batch_saves_what_it_can_and_reports_the_rest(tmp_path):
    good = PendingSave(tmp_path / "good.json", b'{"a": 1}\n')
    (tmp_path / "bad.json").mkdir()
    bad = PendingSave(tmp_path / "bad.json", b"{}\n")
    missing = PendingSave(tmp_path / "no" / "such.json", b"{}\n")
    write_batch(tmp_path, [good, bad, missing])
    assert good.error is None and good.path.read_bytes() == b'{"a": 1}\n'
    assert isinstance(bad.error, IsADirectoryError)
    assert isinstance(missing.error, FileNotFoundError)


def test_flusher_batches_what_waits_and_drains_on_close(tmp_path):
    store = EventStore(tmp_path)
    batches: list[list[str]] = []
    first_done, release = threading.Event(), threading.Event()

    def on_done(batch):
        batches.append([item.token for item in batch])
        first_done.set()
        release.wait(10)  # hold the thread: everything submitted meanwhile must form one batch

    flusher = store.flusher(on_done)
    flusher.submit(store.pending("k0", b"{}", {}, token=0))
    assert first_done.wait(10)
    for i in range(1, 6):
        flusher.submit(store.pending(f"k{i}", b"{}", {}, token=i))
    release.set()
    flusher.close()
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert store.keys() == {f"k{i}" for i in range(6)}
    assert isinstance(flusher, Flusher)
