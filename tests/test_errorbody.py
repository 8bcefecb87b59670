"""Every error body shape in docs/contract.md becomes (code, type, message), never an error."""

import json

import pytest

from cloudchat_cli.core.errorbody import parse_error_body


def body(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(("status", "raw", "message", "code", "kind"), [
    (429, body({"error": {"code": 429, "type": "rate_limited", "message": "slow down"}}),
     "slow down", 429, "rate_limited"),
    (400, body({"code": "invalid_to", "message": "bad number"}), "bad number", "invalid_to", None),
    (404, body({"message": "no such thing"}), "no such thing", None, None),
    (401, body({"error": "invalid key"}), "invalid key", None, None),
    (400, body({"errors": [{"field": "to", "message": "invalid"}, "also this"]}),
     "to: invalid; also this", None, None),
    (500, b"<html><body>Bad Gateway</body></html>", "server error; non-JSON text/html body: "
     "<html><body>Bad Gateway</body></html>", None, None),
    (503, b"", "service unavailable (empty response body)", None, None),
    (400, body([1, 2]), "bad request; unexpected body: [1, 2]", None, None),
    (400, body("just a string"), 'bad request; unexpected body: "just a string"', None, None),
    (400, body({"unrelated": True}), 'bad request; body: {"unrelated": true}', None, None),
])
def test_shapes(status, raw, message, code, kind):
    parsed = parse_error_body(status, raw, "text/html" if raw.startswith(b"<") else None)
    assert parsed.message == message
    assert parsed.code == code
    assert parsed.type == kind


def test_param_is_kept():
    parsed = parse_error_body(400, body({"error": {"code": 400, "type": "invalid_request",
                                                   "message": "bad", "param": "to"}}))
    assert parsed.param == "to"


def test_huge_and_multiline_bodies_are_cut_to_one_line():
    parsed = parse_error_body(500, b"line1\nline2\r\n" + b"x" * 100_000)
    assert "\n" not in parsed.message
    assert len(parsed.message) < 300


def test_invalid_utf8_and_deep_nesting():
    assert "non-JSON" in parse_error_body(500, b"\xff\xfe\x00garbage").message
    deep = b"[" * 100_000 + b"]" * 100_000
    assert parse_error_body(500, deep).message
