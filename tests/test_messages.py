"""Recipient validation/normalisation and message building."""

import pytest

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
