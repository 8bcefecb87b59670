"""Property-based: every parser either works or raises the project's own error type."""

import contextlib
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudchat_cli.core import settings as config
from cloudchat_cli.core.errorbody import parse_error_body
from cloudchat_cli.core.errors import CloudChatError
from cloudchat_cli.services.broadcast import csvsource
from cloudchat_cli.services.broadcast.template import parse_template
from cloudchat_cli.services.messages import normalise_recipient, parse_channel
from cloudchat_cli.services.webhooks.rawrequest import parse_raw_request
from cloudchat_cli.services.webhooks.signature import parse_signature

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
csv_alphabet = st.sampled_from(list(',;\t"\n\r ab12@+é\x00\xff') + ["to", "name"])


@FAST
@given(st.binary(max_size=400))
def test_csv_reader_bytes(tmp_path, data):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        info = csvsource.open_csv(path)
        for _ in csvsource.rows(info):
            pass
    except CloudChatError:
        pass


@FAST
@given(st.lists(csv_alphabet, max_size=80).map("".join))
def test_csv_reader_text(tmp_path, text):
    path = tmp_path / "fuzz.csv"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        info = csvsource.open_csv(path)
        rows = list(csvsource.rows(info))
        assert all(set(r) == set(info.header) for _, r in rows)
    except CloudChatError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(list("{}!:.[]0 ab_|") + ["name", "{name}", ">999"]),
                max_size=20).map("".join),
       st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_template_renderer(source, values):
    try:
        template = parse_template(source)
        template.check_columns(list(values))
        rendered = template.render(values)
    except CloudChatError:
        return
    assert isinstance(rendered, str)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["whatsapp", "telegram", "instagram", "messenger"]),
       st.text(max_size=40), st.sampled_from(["", "62", "1"]))
def test_recipient_normaliser(channel, raw, cc):
    try:
        result = normalise_recipient(channel, raw, cc)
    except CloudChatError:
        return
    assert result and result.isprintable() and " " not in result


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_channel_parser(value):
    with contextlib.suppress(CloudChatError):
        assert parse_channel(value) in ("whatsapp", "telegram", "instagram", "messenger")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80),
                 st.text(alphabet=string.hexdigits + "=sha256+/-_", min_size=40, max_size=70)))
def test_signature_parser(value):
    with contextlib.suppress(CloudChatError):
        assert len(parse_signature(value)) == 32


@settings(max_examples=500, deadline=None)
@given(st.integers(100, 599), st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["error", "message", "code", "errors", "type", "x"]),
                      children, max_size=4),
    max_leaves=10).map(lambda v: __import__("json").dumps(v).encode())))
def test_error_body_parser(status, body):
    parsed = parse_error_body(status, body, "application/json")
    assert parsed.message and "\n" not in parsed.message and len(parsed.message) <= 300


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(
    [b"POST / HTTP/1.1", b"\r\n", b"\n", b"Content-Length: 3", b"Content-Length: x",
     b"Transfer-Encoding: chunked", b"3", b"0", b"abc", b"X-CloudChat-Signature: ab",
     b": bad", b"zz"]), max_size=12).map(b"".join)))
def test_raw_request_parser(data):
    try:
        request = parse_raw_request(data)
    except CloudChatError:
        return
    assert isinstance(request.body, bytes)


toml_pieces = st.sampled_from(['[profiles.a]\n', '[profiles]\n', 'rate_limit = 5\n',
                               'rate_limit = "x"\n', 'timeout = -1\n', 'base_url = 3\n',
                               'default_profile = "a"\n', 'default_profile = 1\n', '[x]\n',
                               'y = [1, 2]\n', '= broken\n', 'profiles = 3\n',
                               '[profiles."a b"]\n', 'default_channel = "tg"\n', '\x00'])


@FAST
@given(st.one_of(st.lists(toml_pieces, max_size=8).map("".join), st.text(max_size=60)))
def test_config_loader(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = config.load_config(path)
        for name in cfg.profiles():
            config.resolve(cfg, name, env={})
    except CloudChatError:
        pass


