"""Settings: environment and instance file, validated at start; production refuses weak secrets."""

import pytest

from mh_platform.config import DEFAULT_SECRET, ConfigError, load_settings


def test_defaults_are_sqlite_under_var():
    s = load_settings(environ={"MHP_CONFIG_FILE": "/nonexistent"})
    assert s.database_url.startswith("sqlite:///") and "/var/" in s.database_url


def test_environment_overrides_and_types():
    s = load_settings(environ={"MHP_CONFIG_FILE": "/nonexistent", "MHP_SESSION_MINUTES": "45",
                               "MHP_COOKIE_SECURE": "yes", "MHP_TOTP_ROLES": "counsellor, city_officer"})
    assert s.session_minutes == 45 and s.cookie_secure is True
    assert s.totp_roles == ("counsellor", "city_officer")


def test_production_refuses_default_or_missing_secret():
    base = {"MHP_CONFIG_FILE": "/nonexistent", "MHP_ENV": "production", "MHP_COOKIE_SECURE": "true"}
    with pytest.raises(ConfigError, match="MHP_SECRET_KEY"):
        load_settings(environ=base)
    with pytest.raises(ConfigError, match="MHP_SECRET_KEY"):
        load_settings(environ={**base, "MHP_SECRET_KEY": DEFAULT_SECRET})
    with pytest.raises(ConfigError, match="MHP_SECRET_KEY"):
        load_settings(environ={**base, "MHP_SECRET_KEY": "short"})
    ok = load_settings(environ={**base, "MHP_SECRET_KEY": "x" * 40})
    assert ok.is_production


def test_bad_values_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a boolean"):
        load_settings(environ={"MHP_CONFIG_FILE": "/nonexistent", "MHP_COOKIE_SECURE": "maybe"})
    with pytest.raises(ConfigError, match="sqlite"):
        load_settings(environ={"MHP_CONFIG_FILE": "/nonexistent", "MHP_DATABASE_URL": "mysql://x"})
    f = tmp_path / "mhp.toml"
    f.write_text('unknown_thing = 1\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={"MHP_CONFIG_FILE": str(f)})
    f.write_text('session_minutes = 12\nhelp_hotline = "12355"\n')
    s = load_settings(environ={"MHP_CONFIG_FILE": str(f)})
    assert s.session_minutes == 12 and s.help_hotline == "12355"
