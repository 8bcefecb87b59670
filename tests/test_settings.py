"""Settings resolution: precedence, sources, the config file and its errors."""

from pathlib import Path

import pytest

from cloudchat_cli.core import settings
from cloudchat_cli.core.errors import ConfigError


def write(path: Path, text: str) -> settings.ConfigFile:
    path.write_text(text, encoding="utf-8")
    return settings.load_config(path)


def test_precedence_flag_env_profile_default(tmp_path):
    cfg = write(tmp_path / "c.toml", '[profiles.shop]\nrate_limit = 30\ntimeout = 5\n'
                'base_url = "http://p.example/api"\n')
    env = {"CLOUDCHAT_RATE_LIMIT": "20", "CLOUDCHAT_TIMEOUT": "7"}
    s = settings.resolve(cfg, "shop", flags={"rate_limit": 10}, env=env)
    assert (s.rate_limit, s.source("rate_limit").source) == (10, "flag")
    assert (s.timeout, s.source("timeout").source) == (7.0, "env")
    assert s.source("timeout").detail == "CLOUDCHAT_TIMEOUT"
    assert (s.base_url, s.source("base_url").source) == ("http://p.example/api", "profile")
    assert "shop" in s.source("base_url").detail
    assert (s.rate_window, s.source("rate_window").source) == (60.0, "default")
    assert s.default_channel == "whatsapp"


def test_override_beats_everything(tmp_path):
    cfg = settings.load_config(tmp_path / "missing.toml")
    s = settings.resolve(cfg, "default", env={"CLOUDCHAT_BASE_URL": "http://env/x"},
                         overrides={"base_url": ("http://127.0.0.1:1/api", "sandbox")})
    assert s.base_url == "http://127.0.0.1:1/api"
    assert s.source("base_url").source == "sandbox"


def test_env_values_are_checked(tmp_path):
    cfg = settings.load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="rate_limit from CLOUDCHAT_RATE_LIMIT must be an int"):
        settings.resolve(cfg, "default", env={"CLOUDCHAT_RATE_LIMIT": "lots"})
    with pytest.raises(ConfigError, match="rate_window .* must be > 0"):
        settings.resolve(cfg, "default", env={"CLOUDCHAT_RATE_WINDOW": "0"})
    with pytest.raises(ConfigError, match="default_channel"):
        settings.resolve(cfg, "default", env={"CLOUDCHAT_DEFAULT_CHANNEL": "sms"})


def test_channel_alias_and_country_code_normalised(tmp_path):
    cfg = settings.load_config(tmp_path / "missing.toml")
    s = settings.resolve(cfg, "default", env={"CLOUDCHAT_DEFAULT_CHANNEL": "TG",
                                              "CLOUDCHAT_DEFAULT_COUNTRY_CODE": "+62"})
    assert s.default_channel == "telegram"
    assert s.default_country_code == "62"


def test_profile_selection_sources(tmp_path):
    cfg = write(tmp_path / "c.toml", 'default_profile = "shop"\n[profiles.shop]\n')
    assert settings.select_profile(cfg, "x", {}) == ("x", "flag (--profile)")
    assert settings.select_profile(cfg, None, {"CLOUDCHAT_PROFILE": "y"})[0] == "y"
    assert settings.select_profile(cfg, None, {})[0] == "shop"
    empty = settings.load_config(tmp_path / "none.toml")
    assert settings.select_profile(empty, None, {}) == ("default", "default")
    with pytest.raises(ConfigError, match="invalid profile name"):
        settings.select_profile(cfg, "../evil", {})


def test_malformed_toml_names_file_and_line(tmp_path):
    path = tmp_path / "c.toml"
    with pytest.raises(ConfigError) as info:
        write(path, '[profiles.shop]\nrate_limit = 30\nbase_url = \n')
    assert str(path) in info.value.message
    assert "line 3" in info.value.message


def test_wrong_type_and_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="profile 'shop', rate_limit must be an integer"):
        write(tmp_path / "a.toml", '[profiles.shop]\nrate_limit = "many"\n')
    with pytest.raises(ConfigError, match="rate_limit must be an integer"):
        write(tmp_path / "b.toml", '[profiles.shop]\nrate_limit = true\n')
    cfg = write(tmp_path / "c.toml", 'colour = 1\n[profiles.shop]\nspeed = 3\ntimeout = 4\n')
    assert len(cfg.warnings) == 2
    assert cfg.profile("shop") == {"timeout": 4.0}
    with pytest.raises(ConfigError, match="not UTF-8"):
        (tmp_path / "d.toml").write_bytes(b"\xff\xfe[profiles]")
        settings.load_config(tmp_path / "d.toml")


def test_round_trip_and_atomic_save(tmp_path):
    path = tmp_path / "dir" / "config.toml"
    cfg = settings.load_config(path)
    cfg.set("shop", "base_url", 'http://h/"quoted"\\back')
    cfg.set("shop", "rate_limit", 30)
    cfg.set("shop", "rate_window", 1.5)
    cfg.data["default_profile"] = "shop"
    cfg.save()
    again = settings.load_config(path)
    assert again.profile("shop") == {"base_url": 'http://h/"quoted"\\back', "rate_limit": 30,
                                     "rate_window": 1.5}
    assert again.default_profile() == "shop"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_parse_setting_rejects_unknown(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        settings.parse_setting("colour", "1")
    assert settings.parse_setting("base_url", "http://x/y/") == "http://x/y"


@pytest.mark.parametrize(("line", "message"), [
    ("base_url = 3", "base_url must be a URL string"),
    ("default_channel = 5", "default_channel must be one of"),
    ("default_country_code = true", "default_country_code must be 1-4 digits"),
    ("default_country_code = 3.5", "default_country_code must be 1-4 digits"),
])
def test_wrong_toml_types_are_config_errors(tmp_path, line, message):
    # Found by the config-loader fuzz test in CI: `base_url = 3` was a traceback.
    with pytest.raises(ConfigError, match=message):
        write(tmp_path / "c.toml", f"[profiles.shop]\n{line}\n")


def test_integer_country_code_is_accepted(tmp_path):
    assert write(tmp_path / "c.toml", "[profiles.shop]\ndefault_country_code = 62\n"
                 ).profile("shop") == {"default_country_code": "62"}


def test_the_readme_documents_every_setting_with_its_variable():
    """Settings are described in the README's table only (Spec carries no help text)."""
    from cloudchat_cli.core.settings import SPECS

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
            for line in readme.splitlines() if line.startswith("| `")}
    for name, spec in SPECS.items():
        assert rows.get(name) == spec.env, name
