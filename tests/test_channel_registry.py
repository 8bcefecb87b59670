"""The channel registry: validation, errors, completion and matching derive from it, and the
sandbox's own copy of the channel rules agrees with it."""

from __future__ import annotations

import sqlite3

import pytest

from cloudchat_cli.core import channels
from cloudchat_cli.core.channels import InvalidMessage, parse_channel
from cloudchat_cli.sandbox import contract
from cloudchat_cli.services.messages import MessageSpec, build_payload, normalise_recipient

# (channel, recipient as the API takes it, valid): both sides must give the same answer.
RECIPIENTS = [
    ("whatsapp", "12345678", True),  # 8 digits, the shortest
    ("whatsapp", "123456789012345", True),  # 15, the longest
    ("whatsapp", "6281234567890", True),
    ("whatsapp", "1234567", False),
    ("whatsapp", "1234567890123456", False),
    ("whatsapp", "0812345678", False),  # a local number is not the API's form
    ("whatsapp", "+6281234567890", False),  # nor is a leading + (the client drops it)
    ("whatsapp", "62812abc", False),
    ("whatsapp", "٦٢٨١٢٣٤٥٦٧٨٩", False),  # Arabic-Indic digits
    ("whatsapp", "@alice_bot", False),
    ("telegram", "123456789", True),
    ("telegram", "-1001234567890", True),  # a group's chat id
    ("telegram", "1" * 20, True),
    ("telegram", "1" * 21, False),
    ("telegram", "@abcd", True),  # a letter and three more: the shortest username
    ("telegram", "@abc", False),
    ("telegram", "@" + "a" * 32, True),
    ("telegram", "@" + "a" * 33, False),
    ("telegram", "@1abc", False),
    ("telegram", "@alice-bob", False),
    ("telegram", "alice", False),
    ("telegram", "--5", False),
    ("instagram", "17841400000000", True),
    ("instagram", "1" * 32, True),
    ("instagram", "1" * 33, False),
    ("instagram", "@bob", False),
    ("instagram", "-5", False),
    ("messenger", "1234567890", True),
    ("messenger", "12 34", False),
    ("messenger", "abc", False),
    *((c.name, c.example, True) for c in channels.REGISTRY),
]


def _sandbox_accepts(channel: str, to: str) -> bool:
    problem = contract.check_message({"channel": channel, "to": to, "type": "text", "text": "Hi"})
    assert problem is None or problem[0] == "to", problem  # only the recipient is in question
    return problem is None


def _client_sends_as_is(channel: str, to: str) -> bool:
    """The client takes ``to`` and sends it unchanged (``+62…`` is valid but sent as ``62…``)."""
    try:
        return normalise_recipient(channel, to) == to
    except InvalidMessage:
        return False


def test_sandbox_and_client_know_the_same_channels():
    assert contract.CHANNELS == channels.CHANNELS
    assert set(contract.RECIPIENT) == set(channels.CHANNELS)


@pytest.mark.parametrize("alias", sorted(channels.ALIASES))
def test_every_alias_goes_on_the_wire_as_a_name_the_sandbox_accepts(alias):
    entry = channels.BY_NAME[parse_channel(alias.upper())]
    body = build_payload(MessageSpec(to=entry.example, channel=f" {alias.title()} ", text="Hi"))
    assert body["channel"] == entry.name
    assert contract.check_message(body) is None
    if alias != entry.name:  # the sandbox takes only canonical names: an alias sent is a bug
        assert contract.check_message({**body, "channel": alias})[0] == "channel"


@pytest.mark.parametrize(("channel", "to", "valid"), RECIPIENTS,
                         ids=[f"{c}-{t}" for c, t, _ in RECIPIENTS])
def test_sandbox_and_client_agree_on_recipients(channel, to, valid):
    assert _client_sends_as_is(channel, to) is valid
    assert _sandbox_accepts(channel, to) is valid


@pytest.mark.parametrize(("channel", "raw"), [
    ("whatsapp", "+62 812-3456-7890"), ("whatsapp", "0062 (812) 3456.7890"),
    ("whatsapp", "0812 3456 7890"), ("telegram", " @Alice_Bot "), ("messenger", " 42 "),
])
def test_what_the_client_normalises_the_sandbox_accepts(channel, raw):
    assert _sandbox_accepts(channel, normalise_recipient(channel, raw, "62"))


def test_errors_and_help_name_the_registrys_channels_and_short_aliases():
    assert channels.choices() == "whatsapp, telegram, instagram, messenger (or wa, tg, ig, fb)"
    assert channels.choices("|") == "whatsapp|telegram|instagram|messenger (or wa|tg|ig|fb)"
    with pytest.raises(InvalidMessage) as info:
        parse_channel("sms")
    assert info.value.message == f"unknown channel 'sms': use one of {channels.choices()}"
    assert info.value.field == "channel"


@pytest.mark.parametrize(("channel", "raw", "message"), [
    ("whatsapp", " 1234 ", "invalid WhatsApp number '1234': an international number has 8-15 "
                           "digits and starts with its country code"),
    ("whatsapp", "62812abc", "invalid WhatsApp number '62812abc': only digits, spaces, dashes, "
                             "brackets, dots between digits and a leading + are allowed"),
    ("telegram", " alice", "invalid Telegram recipient ' alice': use a numeric chat id or "
                           "@username"),
    ("instagram", "@bob", "invalid Instagram recipient '@bob': use the numeric user id"),
    ("messenger", "12 34", "invalid Messenger recipient '12 34': use the numeric user id"),
])
def test_recipient_errors_come_from_the_registry_entry(channel, raw, message):
    with pytest.raises(InvalidMessage) as info:
        normalise_recipient(channel, raw)
    assert info.value.message == message and info.value.field == "to"


@pytest.mark.parametrize(("word", "expected"), [
    ("", ["whatsapp", "telegram", "instagram", "messenger"]),
    ("T", ["telegram"]),
    ("f", ["fb", "facebook"]),  # no name starts with it: the aliases that do
    ("x", []),
])
def test_completion_offers_names_then_aliases(word, expected):
    from cloudchat_cli.commands.completion import complete_channel

    assert complete_channel(word) == expected


def test_match_key_sql_agrees_with_match_key():
    rows = [(c, r) for c in channels.CHANNELS
            for r in ("@Alice_Bot", "@alice_bot", "123", "-100123", "6281234567890", "@X")]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE rows (channel TEXT, recipient TEXT)")
    db.executemany("INSERT INTO rows VALUES (?, ?)", rows)
    sql = f"SELECT channel, recipient, {channels.MATCH_KEY_SQL.format(t='rows.')} FROM rows"
    for channel, recipient, key in db.execute(sql):
        assert key == channels.match_key(channel, recipient), (channel, recipient)
    assert channels.match_key("telegram", "@Alice_Bot") == "@alice_bot"
    assert channels.match_key("whatsapp", "@Alice_Bot") == "@Alice_Bot"
