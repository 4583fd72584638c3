"""Settings from the environment (``MHP_*``) and an optional instance file, validated at start.

No Flask import: the CLI, the scheduler and the services read the same ``Settings``.
Precedence: explicit overrides > environment > instance file (``instance/mhp.toml`` or the file
named by ``MHP_CONFIG_FILE``) > defaults.
"""

from __future__ import annotations

import os
import pathlib
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_VAR = REPO_ROOT / "var"
DEFAULT_SECRET = "dev-secret-change-me"  # noqa: S105 - the known-bad default production refuses


class ConfigError(Exception):
    """The configuration is unusable; the message says which setting and why."""


def _bool(v: str) -> bool:
    if v.lower() in {"1", "true", "yes", "on"}:
        return True
    if v.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {v!r}")


@dataclass(frozen=True)
class Settings:
    env: str = "development"  # development | test | production
    database_url: str = f"sqlite:///{DEFAULT_VAR / 'mhp.sqlite3'}"
    secret_key: str = DEFAULT_SECRET
    master_key_file: str = str(DEFAULT_VAR / "master.key")
    # Append-only copy of the erasure ledger kept OUTSIDE the database (replayed after a restore).
    erasure_ledger_file: str = str(DEFAULT_VAR / "erasure-ledger.jsonl")
    breakglass_hours: int = 4
    audit_key: str = ""  # HMAC key for the event-log chain; derived from the master key when empty
    base_url: str = "http://127.0.0.1:5000"
    default_locale: str = "zh_CN"
    session_minutes: int = 30
    api_token_minutes: int = 30
    login_max_attempts: int = 5
    login_lockout_minutes: int = 15
    totp_roles: tuple[str, ...] = ()
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_sender: str = "noreply@mhp.local"
    wecom_webhook_url: str = ""
    help_hotline: str = "12356"
    help_counselling_room: str = "学校心理辅导室"
    # a student sitting already open when a campaign window closes may still save and submit for
    # this many minutes (no new sitting starts after the close); 0 = the close is hard
    sitting_grace_minutes: int = 15
    rate_limit_storage: str = "database://"  # web.rate_limit_storage; memory:// counts per process
    scheduler_in_process: bool = False
    escalation_policy_file: str = ""
    cookie_secure: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def validate(self) -> Settings:
        if self.env not in {"development", "test", "production"}:
            raise ConfigError(f"MHP_ENV must be development, test or production, not {self.env!r}")
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ConfigError("MHP_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
        if self.is_production:
            if not self.secret_key or self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32:
                raise ConfigError("production needs MHP_SECRET_KEY: at least 32 random characters, not the default")
            if not self.cookie_secure:
                raise ConfigError("production needs MHP_COOKIE_SECURE=true (HTTPS only cookies)")
        if self.session_minutes <= 0 or self.api_token_minutes <= 0:
            raise ConfigError("session and token lifetimes must be positive minutes")
        if not 0 <= self.sitting_grace_minutes <= 120:
            raise ConfigError("MHP_SITTING_GRACE_MINUTES must be 0 to 120 minutes")
        return self


_ENV_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    default = getattr(Settings, name, None) if name != "extra" else None
    if isinstance(raw, str):
        if isinstance(default, bool):
            return _bool(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, tuple):
            return tuple(x.strip() for x in raw.split(",") if x.strip())
    if isinstance(default, tuple) and isinstance(raw, list):
        return tuple(raw)
    return raw


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build and validate settings. Raises ConfigError with one clear message."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    inst = env.get("MHP_CONFIG_FILE") or str(REPO_ROOT / "instance" / "mhp.toml")
    p = pathlib.Path(inst)
    if p.is_file():
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"instance file {p}: {exc}") from exc
        for k, v in data.items():
            if k not in _ENV_TYPES:
                raise ConfigError(f"instance file {p}: unknown setting {k!r}")
            values[k] = v
    for name in _ENV_TYPES:
        key = f"MHP_{name.upper()}"
        if key in env:
            values[name] = env[key]
    for k, v in (overrides or {}).items():
        if k not in _ENV_TYPES:
            raise ConfigError(f"unknown setting {k!r}")
        values[k] = v
    try:
        coerced = {k: _coerce(k, v) for k, v in values.items()}
    except ValueError as exc:
        raise ConfigError(f"bad setting: {exc}") from exc
    return replace(Settings(), **coerced).validate()
