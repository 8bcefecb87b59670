"""Recipient validation/normalisation and message building."""

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from cloudchat_cli.services.messages import (
    InvalidMessage,
    MessageSpec,
    build_payload,
    infer_type,
    normalise_recipient,
    parse_channel,
    parse_fields,
)


@pytest.mark.parametrize(
    ("raw", "cc", "expected"),
    [
        ("6281234567890", "", "6281234567890"),
        ("+62 812-3456-7890", "", "6281234567890"),
        ("+62 (812) 3456.7890", "", "6281234567890"),
        ("0062 812 3456 7890", "", "6281234567890"),
        ("081234567890", "62", "6281234567890"),
        ("  6281234567890 ", "", "6281234567890"),
    ],
)
def test_whatsapp_normalisation(raw, cc, expected):
    assert normalise_recipient("whatsapp", raw, cc) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("081234567890", "local number"),
        ("62812abc", "only digits"),
        ("1234", "8-15 digits"),
        ("6281234567890123456", "8-15 digits"),
        ("62812\n34567890", "control characters"),
        ("62812\x0034567890", "control characters"),
        ("", "empty"),
        ("6" * 100, "too long"),
        ("٦٢٨١٢٣٤٥٦٧٨٩", "only digits"),
    ],
)
def test_whatsapp_rejections(raw, message):
    with pytest.raises(InvalidMessage, match=message):
        normalise_recipient("whatsapp", raw, "")


@pytest.mark.parametrize(("channel", "raw"), [
    ("telegram", "123456789"), ("telegram", "-1001234567890"), ("telegram", "@alice_bot"),
    ("instagram", "17841400000000000"), ("messenger", "1234567890"),
])
def test_other_channels_accept(channel, raw):
    assert normalise_recipient(channel, raw) == raw


@pytest.mark.parametrize(("channel", "raw"), [
    ("telegram", "alice"), ("telegram", "@a"), ("telegram", "@1abc"), ("instagram", "@bob"),
    ("messenger", "12 34"), ("messenger", "-5"),
])
def test_other_channels_reject(channel, raw):
    with pytest.raises(InvalidMessage):
        normalise_recipient(channel, raw)


def test_channel_aliases():
    assert [parse_channel(c) for c in ("wa", "TG", "ig", "fb", "facebook", "Messenger")] == [
        "whatsapp", "telegram", "instagram", "messenger", "messenger", "messenger"]
    with pytest.raises(InvalidMessage, match="unknown channel 'sms'"):
        parse_channel("sms")


def test_type_inference():
    assert infer_type(None, None) == "text"
    assert infer_type("https://x/a.JPG?x=1", None) == "image"
    assert infer_type("https://x/v.mp4", None) == "video"
    assert infer_type("https://x/a.ogg", None) == "audio"
    assert infer_type("https://x/file", None) == "document"
    assert infer_type("https://x/a.jpg", "document") == "document"
    with pytest.raises(InvalidMessage, match="unknown message type"):
        infer_type(None, "sticker")


def test_build_text_and_media_payloads():
    body = build_payload(MessageSpec(to="+62 812 3456 7890", channel="wa", text="Halo",
                                     fields={"ref": "A1"}))
    assert body == {"channel": "whatsapp", "to": "6281234567890", "type": "text",
                    "text": "Halo", "ref": "A1"}
    media = build_payload(MessageSpec(to="@alice_bot", channel="tg", media_url="https://x/a.pdf",
                                      caption="inv", filename="a.pdf"))
    assert media == {"channel": "telegram", "to": "@alice_bot", "type": "document",
                     "media": {"url": "https://x/a.pdf", "caption": "inv", "filename": "a.pdf"}}


@pytest.mark.parametrize(("spec", "message"), [
    (MessageSpec(to="6281234567890", channel="wa", text=""), "text is empty"),
    (MessageSpec(to="6281234567890", channel="wa", text="x" * 4097), "at most 4096"),
    (MessageSpec(to="6281234567890", channel="wa", media_url="http://x/a.jpg"), "https://"),
    (MessageSpec(to="6281234567890", channel="wa", type="image"), "needs --media-url"),
    (MessageSpec(to="6281234567890", channel="wa", text="x", caption="c"), "media --type"),
])
def test_build_rejections(spec, message):
    with pytest.raises(InvalidMessage, match=message):
        build_payload(spec)


def test_fields():
    assert parse_fields(["a=1", "b.c=x=y"]) == {"a": "1", "b.c": "x=y"}
    for bad, message in [("novalue", "key=value"), ("to=123", "override"),
                         ("text=x", "override"), ("bad key=1", "not a valid name")]:
        with pytest.raises(InvalidMessage, match=message):
            parse_fields([bad])


# --- numbers a spreadsheet changed: refused, never sent to another number -------------------

@pytest.mark.parametrize(("channel", "raw", "message"), [
    ("whatsapp", "6281234567896.0", "decimal zero"),
    ("whatsapp", "6281234567891.00", "decimal zero"),
    ("whatsapp", "6281234567891,0", "decimal zero"),
    ("whatsapp", "6.28123E+12", "scientific notation"),
    ("whatsapp", "6,28123E+12", "scientific notation"),
    ("whatsapp", "6.281234567895e12", "scientific notation"),
    ("whatsapp", "'6281234567892", "apostrophe"),
    ("whatsapp", "\u20196281234567892", "apostrophe"),
    ("whatsapp", "6,281,234,567,891", "thousands separators"),
    ("telegram", "-1001234567890.0", "decimal zero"),
    ("telegram", "-1.00123E+12", "scientific notation"),
    ("messenger", "1234567890.0", "decimal zero"),
    ("whatsapp", "6281234567801.5", "decimal point"),
    ("whatsapp", "+6281234567801.25", "decimal point"),
    ("whatsapp", "6281234567801,5", "decimal point"),
    ("telegram", "-1001234567890.5", "decimal point"),
    ("whatsapp", "2026-01-01", "looks like a date"),
    ("whatsapp", "2026-01-01 08:30", "looks like a date"),
    ("whatsapp", "2026-01-01T08:30:15", "looks like a date"),
    ("telegram", "2026-01-01", "looks like a date"),
    ("whatsapp", "-6281234567803", "minus"),
    ("whatsapp", " -62 812 3456 7803", "minus"),
])
def test_spreadsheet_artefacts_are_refused_with_the_fix(channel, raw, message):
    with pytest.raises(InvalidMessage, match=message) as info:
        normalise_recipient(channel, raw, "62")
    assert info.value.field == "to"
    assert "format the column as Text" in info.value.hint


def test_what_still_looks_like_a_number_is_accepted():
    assert normalise_recipient("whatsapp", "628.1234.5678") == "62812345678"
    assert normalise_recipient("whatsapp", "+62 812-3456-7890") == "6281234567890"
    assert normalise_recipient("whatsapp", "0812-3456-7890", "62") == "6281234567890"
    assert normalise_recipient("telegram", "-1001234567890") == "-1001234567890"


@pytest.mark.parametrize(("raw", "message"), [
    (".6281234567891", "dot may only separate"),
    ("6281234567891.", "dot may only separate"),
    ("62..81234567891", "dot may only separate"),
    ("+62 (0)812 3456 7890", "is not dialled from abroad"),
    ("62812/34567890", "only digits"),
])
def test_ambiguous_separators_are_refused(raw, message):
    with pytest.raises(InvalidMessage, match=message):
        normalise_recipient("whatsapp", raw, "62")


def _digits_written(raw: str, cc: str) -> str:
    """The number a person meant: the digits they wrote, an international prefix (+ or 00)
    dropped, a local 0 replaced by the configured country code."""
    digits = "".join(ch for ch in raw if ch in "0123456789")
    if raw.strip().startswith("+"):
        return digits
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("0"):
        return cc + digits[1:]
    return digits


@given(
    raw=st.text(alphabet=st.sampled_from(list("0123456789" * 4 + " +-().,'eE/\u00a0")),
                max_size=24),
    cc=st.sampled_from(["", "62", "1", "44"]),
)
@hyp_settings(max_examples=3000)
def test_accepted_numbers_keep_exactly_the_digits_written(raw, cc):
    try:
        sent = normalise_recipient("whatsapp", raw, cc)
    except InvalidMessage:
        return
    assert sent == _digits_written(raw, cc)


@given(digits=st.from_regex(r"\A[1-9][0-9]{7,14}\Z"), cc=st.sampled_from(["", "62"]))
def test_a_written_number_is_accepted_as_it_is(digits, cc):
    for shown in (digits, f"+{digits}", f"{digits[:3]} {digits[3:7]}-{digits[7:]}",
                  f"{digits[:3]}.{digits[3:7]}.{digits[7:]}"):
        assert normalise_recipient("whatsapp", shown, cc) == digits
