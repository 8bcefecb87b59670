"""The sandbox never breaks on strange input, and answers methods and auth like a real API.

Every request gets a JSON answer (201 or a field-specific 4xx); later requests, the listing
``GET /_sandbox/messages`` and the record file (valid UTF-8 JSON lines) keep working.
"""

from __future__ import annotations

import json
import math

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import TEST_KEY

AUTH = {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}
MSG = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "Halo"}


def raw_post(box, body: bytes, headers=AUTH) -> httpx.Response:
    return httpx.post(box.base_url + "/messages", content=body, headers=headers, timeout=10)


def root(box) -> str:
    return box.base_url.split("/api/")[0]


def assert_healthy(box) -> list[dict]:
    """Listing works, the record is valid UTF-8 JSON lines, and a normal send still works."""
    listed = httpx.get(root(box) + "/_sandbox/messages", timeout=10)
    assert listed.status_code == 200
    messages = listed.json()["messages"]
    assert listed.json()["count"] == len(messages)
    raw = box.record_path.read_bytes()
    lines = raw.decode("utf-8").splitlines()  # strict UTF-8: no surrogates as CESU-8
    assert len(lines) == raw.count(b"\n")  # no U+2028/NEL left raw to split a record
    for line in lines:
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in the record"))
    assert raw_post(box, json.dumps(MSG).encode()).status_code == 201
    return messages


STRANGE = {
    # name: (raw JSON body, expected status, expected param for a 400)
    "lone surrogate in text": (b'{"channel":"whatsapp","to":"6281234567890","text":"a\\ud800b"}',
                               201, None),
    "low surrogate alone in text": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"\\udfff"}', 201, None),
    "lone surrogate in an extra field": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"x","meta":{"k\\ud83d":"\\ud83d"}}',
        201, None),
    "lone surrogate in to": (b'{"channel":"whatsapp","to":"62812\\ud800","text":"x"}', 400, "to"),
    "lone surrogate in channel": (b'{"channel":"\\ud800","to":"6281234567890","text":"x"}', 400,
                                  "channel"),
    "NaN text": (b'{"channel":"whatsapp","to":"6281234567890","text":NaN}', 400, "body"),
    "Infinity in an extra field": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"x","n":-Infinity}', 400, "body"),
    "1e999 overflows a double": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"x","n":1e999}', 400, "body"),
    "5000-digit integer": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"x","n":' + b"9" * 5000 + b"}",
        400, "body"),
    "300-digit integer is fine": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"x","n":' + b"9" * 300 + b"}",
        201, None),
    "deep nesting (100 000 levels)": (b"[" * 100_000 + b"]" * 100_000, 400, "body"),
    "deep nesting in an extra field": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"x","n":' + b"[" * 500 + b"]" * 500
        + b"}", 400, "body"),
    "modest nesting is fine": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"x","n":' + b"[" * 30 + b"]" * 30
        + b"}", 201, None),
    "to as a number": (b'{"channel":"whatsapp","to":6281234567890,"text":"x"}', 400, "to"),
    "to as a huge number": (b'{"channel":"whatsapp","to":1e308,"text":"x"}', 400, "to"),
    "to as a list": (b'{"channel":"whatsapp","to":["6281234567890"],"text":"x"}', 400, "to"),
    "to as an object": (b'{"channel":"whatsapp","to":{},"text":"x"}', 400, "to"),
    "to as true": (b'{"channel":"whatsapp","to":true,"text":"x"}', 400, "to"),
    "channel as a number": (b'{"channel":1,"to":"6281234567890","text":"x"}', 400, "channel"),
    "text as a number": (b'{"channel":"whatsapp","to":"6281234567890","text":5}', 400, "text"),
    "type as a list": (b'{"channel":"whatsapp","to":"6281234567890","type":[]}', 400, "type"),
    "invalid UTF-8": (b'{"channel":"whatsapp","to":"6281234567890","text":"\xff"}', 400, "body"),
    "UTF-16 JSON (JSON between systems is UTF-8)": (
        '{"channel":"whatsapp","to":"6281234567890","text":"x"}'.encode("utf-16"), 400, "body"),
    "UTF-8 BOM": (b"\xef\xbb\xbf" + json.dumps(MSG).encode(), 400, "body"),
    "U+2028, U+2029 and NEL in text": (
        b'{"channel":"whatsapp","to":"6281234567890","text":"a\\u2028b\\u2029c\\u0085d"}', 201,
        None),
    "NUL in text": (b'{"channel":"whatsapp","to":"6281234567890","text":"a\\u0000b"}', 201, None),
    "ESC in text": (b'{"channel":"whatsapp","to":"6281234567890","text":"\\u001b[31mred"}', 201,
                    None),
    "a JSON string": (b'"hello"', 400, "body"),
    "JSON null": (b"null", 400, "body"),
    "empty body": (b"", 400, "body"),
    "trailing garbage": (json.dumps(MSG).encode() + b"xx", 400, "body"),
}


@pytest.mark.parametrize("case", list(STRANGE))
def test_strange_body_gets_a_correct_answer(sandbox, case):
    body, status, param = STRANGE[case]
    r = raw_post(sandbox, body)
    assert r.status_code == status, r.text
    answer = r.json()
    if status == 201:
        assert answer["id"].startswith("msg_")
    else:
        assert answer["error"]["param"] == param and answer["error"]["code"] == 400
    messages = assert_healthy(sandbox)
    if status == 201:
        assert messages[0]["id"] == answer["id"]
        assert messages[0]["request"] == json.loads(body)
    assert sandbox.records()[0]["status"] == status


def test_lone_surrogate_text_is_listed_and_recorded_escaped(sandbox):
    r = raw_post(sandbox, b'{"channel":"whatsapp","to":"6281234567890","text":"\\ud800"}')
    assert r.status_code == 201
    listed = httpx.get(root(sandbox) + "/_sandbox/messages", timeout=10)
    assert b"\\ud800" in listed.content
    assert listed.json()["messages"][0]["request"]["text"] == "\ud800"
    assert sandbox.records()[0]["request"]["text"] == "\ud800"
    line = sandbox.readline()  # the console line shows it escaped, never a broken print
    assert "\\ud800" in line


def test_non_ascii_stays_readable_in_the_record(sandbox):
    body = {**MSG, "text": "Halo 👋 café"}
    assert raw_post(sandbox, json.dumps(body, ensure_ascii=False).encode()).status_code == 201
    assert "Halo 👋 café" in sandbox.record_path.read_text(encoding="utf-8")


def test_non_string_to_names_the_field_and_the_type(sandbox):
    r = raw_post(sandbox, b'{"channel":"whatsapp","to":6281234567890,"text":"x"}')
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "to"
    assert "string" in error["message"] and "number" in error["message"]


# --- Hypothesis: any JSON at all, against one live sandbox ---------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.text(st.one_of(st.characters(), SURROGATES), max_size=20)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), TEXT,
    st.sampled_from(["whatsapp", "telegram", "6281234567890", "@someone", "text", "image"]))
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
MESSAGES = st.fixed_dictionaries(
    {}, optional={"channel": JSONISH, "to": JSONISH, "type": JSONISH, "text": JSONISH,
                  "media": JSONISH, "extra": JSONISH})


_BOXES: dict[int, list] = {}
_SEEN: dict[int, int] = {}  # how far each sandbox's record was read


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(MESSAGES, JSONISH))
def test_any_json_gets_a_json_answer_and_the_sandbox_keeps_working(sandbox_factory, body):
    boxes = _BOXES.setdefault(id(sandbox_factory), [])  # one sandbox for all examples
    if not boxes or not boxes[0].running():
        boxes[:] = [sandbox_factory("--rate-limit", "100000")]
    box = boxes[0]
    raw = json.dumps(body).encode()  # surrogates escaped, NaN/Infinity written as such
    r = raw_post(box, raw)
    assert r.status_code in (201, 400), r.text
    answer = r.json()
    if r.status_code == 201:
        assert answer["id"].startswith("msg_")
        assert isinstance(body, dict) and isinstance(body.get("to"), str)
    else:
        assert answer["error"]["param"] in {"body", "channel", "to", "type", "text", "media",
                                            "media.url", "media.caption", "media.filename"}
    finite = "NaN" not in raw.decode() and "Infinity" not in raw.decode()
    if r.status_code == 400 and answer["error"]["param"] == "body" and isinstance(body, dict):
        assert not finite or _has_huge_number(body)
    listed = httpx.get(root(box) + "/_sandbox/messages", timeout=10)
    assert listed.status_code == 200 and listed.json()["count"] == len(listed.json()["messages"])
    with box.record_path.open("rb") as record:  # the lines this example added: each is JSON
        record.seek(_SEEN.get(id(box), 0))
        for line in record.read().decode("utf-8").splitlines():
            json.loads(line)
        _SEEN[id(box)] = record.tell()


def _has_huge_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return len(str(abs(value))) > 4000
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_huge_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_huge_number(v) for v in value)
    return False


# --- methods, Allow, Bearer, GET /messages/{id} --------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "GET", "PUT", "PATCH", "DELETE", "BREW"])
def test_other_methods_on_messages_get_a_json_405_with_allow(sandbox, method):
    r = httpx.request(method, sandbox.base_url + "/messages", headers=AUTH, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert r.headers["Content-Type"] == "application/json"
    if method == "HEAD":
        assert r.content == b"" and int(r.headers["Content-Length"]) > 0
    else:
        assert r.json()["error"] == {"code": 405, "type": "method_not_allowed",
                                     "message": f"{method} is not allowed on "
                                                "/api/public/v1/messages; use POST"}
    assert sandbox.records()[0]["status"] == 405


def test_405_on_sandbox_routes_and_404_elsewhere(sandbox):
    r = httpx.post(root(sandbox) + "/_sandbox/messages", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = httpx.request("OPTIONS", sandbox.base_url + "/messages/msg_x", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = httpx.request("OPTIONS", sandbox.base_url + "/nothing", headers=AUTH, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = httpx.request("OPTIONS", sandbox.base_url + "/nothing", timeout=10)
    assert r.status_code == 401  # under the API prefix the key is checked first
    r = httpx.request("OPTIONS", root(sandbox) + "/nothing", timeout=10)
    assert r.status_code == 404
    head = httpx.head(root(sandbox) + "/_sandbox/messages", timeout=10)
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(sandbox, scheme):
    r = raw_post(sandbox, json.dumps(MSG).encode(),
                 headers={"Authorization": f"{scheme} {TEST_KEY}"})
    assert r.status_code == 201


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", f"Bearer{TEST_KEY}",
                                    f"Bearer {TEST_KEY} extra", f"Token {TEST_KEY}"])
def test_malformed_authorization_is_401(sandbox, header):
    r = raw_post(sandbox, json.dumps(MSG).encode(), headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"


def test_get_message_by_id(sandbox_factory):
    box = sandbox_factory("--key", TEST_KEY, "--key", "sk_test_other_app_000000")
    sent = raw_post(box, json.dumps(MSG).encode()).json()
    url = box.base_url + "/messages/"
    r = httpx.get(url + sent["id"], headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json() == sent
    assert r.headers["X-RateLimit-Limit"] == "60"
    # the probe `config doctor` uses: a good key, an id that does not exist → JSON 404
    r = httpx.get(url + "doctor-probe", headers=AUTH, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    # another App's key does not see this App's messages
    other = {"Authorization": "Bearer sk_test_other_app_000000"}
    assert httpx.get(url + sent["id"], headers=other, timeout=10).status_code == 404
    # a bad or missing key is a 401 whatever the id
    for headers in ({}, {"Authorization": "Bearer sk_test_not_given"}):
        for message_id in ("doctor-probe", sent["id"]):
            r = httpx.get(url + message_id, headers=headers, timeout=10)
            assert r.status_code == 401 and r.json()["error"]["code"] == 401
    statuses = [(r["method"], r["status"]) for r in box.records()]
    assert statuses == [("POST", 201), ("GET", 200), ("GET", 404), ("GET", 404)] + [
        ("GET", 401)] * 4


def test_read_only_key_can_read_but_not_send(sandbox):
    ro = {"Authorization": "Bearer sk_test_ro_reader_0000"}
    assert raw_post(sandbox, json.dumps(MSG).encode(), headers=ro).status_code == 403
    r = httpx.get(sandbox.base_url + "/messages/doctor-probe", headers=ro, timeout=10)
    assert r.status_code == 404
