"""Settings: one frozen dataclass, loaded as defaults < YAML < FOREMAN_* env < flags.

Each field carries its help text and its parser in `metadata`; the example YAML
and the README table are tested to list every field. A bad or missing value
raises `ConfigError` naming the key, which `serve` turns into one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from foreman.browser import parse_origins
from foreman.errors import ConfigError

_HOSTNAME = re.compile(r"[A-Za-z0-9_*]([A-Za-z0-9_.*-]*[A-Za-z0-9_])?")  # "_": Compose service names
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_duration(value: Any, *, allow_negative: bool = False) -> float:
    """`30s`, `5m`, `2h`, `7d`, `1h30m`, `250ms` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h, 7d or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("-")
        try:
            seconds = sign * float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"{value!r} is not a duration (use 30s, 5m, 2h, 7d or a number of seconds)") from None
            seconds = sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0 and not allow_negative:
        raise ValueError(f"{value!r}: must not be negative")
    return seconds


def parse_positive_duration(value: Any) -> float:
    """A duration that must be more than zero (intervals, timeouts, TTLs)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: must be more than zero")
    return seconds


def parse_size(value: Any) -> int:
    """`64MiB`, `256KiB`, `1MB` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 262144, 256KiB or 64MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(str(value).strip())
        if not match:
            raise ValueError(f"{value!r} is not a size (use 262144, 256KiB or 64MiB)")
        size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size <= 0:
        raise ValueError(f"{value!r}: must be positive")
    return size


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"{value!r}: must be at least 1")
    return number


def parse_url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{redacted(text)!r} is not an http(s) URL such as http://mac.tail:11434")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{redacted(text)!r} has an invalid port") from None
    return text


def redacted(url: str) -> str:
    """A URL as foreman shows it (health, logs, errors): credentials become `***`.

    `ollama_url` may carry them for a target behind an authenticating proxy.
    """
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    _userinfo, at, hostport = authority.rpartition("@")
    if not sep or not at:
        return url
    return f"{scheme}://***@{hostport}{slash}{path}"


def parse_listen(value: Any) -> str:
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not address:port such as 127.0.0.1:8080")
    return text


def parse_optional_text(value: Any) -> str | None:
    text = "" if value is None else str(value)
    return text or None


def parse_allow_list(value: Any) -> tuple[str, ...] | None:
    """CIDRs and host names; None keeps the default (everything but link-local)."""
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    cleaned = tuple(str(item).strip() for item in items if str(item).strip())
    for item in cleaned:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            if not _HOSTNAME.fullmatch(item):
                raise ValueError(f"{item!r} is not a CIDR or host name") from None
    return cleaned or None


def _setting(default: Any, parser: Callable[[Any], Any], help: str, *, required: bool = False) -> Any:
    return field(default=default, metadata={"parse": parser, "help": help, "required": required})


@dataclass(frozen=True)
class Settings:
    """Everything `foreman serve` can be told. docs/contract.md section 2 is the source of truth."""

    ollama_url: str = _setting(
        "", parse_url, "base URL of the target Ollama, e.g. http://mac.tail:11434", required=True
    )
    listen: str = _setting("127.0.0.1:8080", parse_listen, "address:port to serve on")
    db_path: str = _setting("foreman.db", str, "SQLite file (WAL mode)")
    token: str | None = _setting(
        None, parse_optional_text, "if set, every endpoint but /healthz needs Authorization: Bearer <token>"
    )
    embed_model: str | None = _setting(
        None, parse_optional_text, "embedder pinned resident (keep_alive -1), warmed at start and on reconnect"
    )
    worker_keep_alive: float = _setting(
        1800.0,
        lambda v: parse_duration(v, allow_negative=True),
        "keep_alive sent with worker-model requests that name none (negative: forever)",
    )
    poll_interval: float = _setting(30.0, parse_positive_duration, "how often /api/tags and /api/ps are polled")
    max_attempts: int = _setting(
        5, parse_positive_int, "tries per job whose connection to the target breaks mid-request"
    )
    retry_backoff: float = _setting(2.0, parse_duration, "first re-queue delay; doubles per attempt")
    retry_backoff_max: float = _setting(300.0, parse_positive_duration, "cap of the re-queue delay")
    first_byte_timeout: float = _setting(
        600.0, parse_positive_duration, "longest wait for the target's first byte (cold loads are slow)"
    )
    idle_timeout: float = _setting(
        120.0, parse_positive_duration, "longest silence between two chunks of a running generation"
    )
    client_stall_timeout: float = _setting(
        60.0,
        parse_positive_duration,
        "a streaming client that accepts no bytes for this long is dropped and its job cancelled",
    )
    max_job_time: float = _setting(7200.0, parse_duration, "a job running longer is stopped and failed (0: no limit)")
    max_wait: float = _setting(
        0.0, parse_duration, "a job queued longer than this goes next, whatever the resident runner (0: off)"
    )
    max_queue: int = _setting(10000, parse_positive_int, "queued jobs at most; past it submits get 503")
    webhook_secret: str | None = _setting(
        None, parse_optional_text, "if set, webhook deliveries are signed (Standard Webhooks)"
    )
    webhook_max_attempts: int = _setting(12, parse_positive_int, "delivery tries per webhook event")
    webhook_backoff: float = _setting(5.0, parse_duration, "first retry delay of a webhook delivery")
    webhook_backoff_max: float = _setting(3600.0, parse_positive_duration, "cap of the webhook retry delay")
    webhook_allow: tuple[str, ...] | None = _setting(
        None, parse_allow_list, "CIDRs / host names webhook URLs may resolve to (default: all but link-local)"
    )
    job_ttl: float = _setting(7 * 86400.0, parse_positive_duration, "terminal jobs older than this are swept")
    inline_artifact_max: int = _setting(
        262144, parse_size, "artifacts up to this many bytes are inlined in responses and webhooks"
    )
    max_body: int = _setting(64 * 1024**2, parse_size, "largest request body accepted; larger: 413")
    allow_model_management: bool = _setting(
        False, parse_bool, "pass pull/delete/create/copy/push through to the target"
    )
    origins: tuple[str, ...] = _setting(
        (),
        parse_origins,
        "browser origins allowed besides Ollama's defaults, as OLLAMA_ORIGINS (comma-separated in env; * wildcards)",
    )

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}


def env_name(key: str) -> str:
    return "FOREMAN_" + key.upper()


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One `--key-name` flag per setting; unset flags stay None and do not override."""
    parser.add_argument("--config", metavar="PATH", help="YAML settings file (else $FOREMAN_CONFIG)")
    for key, spec in FIELDS.items():
        parser.add_argument(flag_name(key), dest=key, metavar="VALUE", default=None, help=spec.metadata["help"])


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of settings")
    for key in data:
        if key not in FIELDS:
            raise ConfigError(str(key), f"unknown setting in {path}")
    return data


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge the four layers and validate every value, naming the key on error."""
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[Any, str]] = {}
    path = config_path or environ.get("FOREMAN_CONFIG") or None
    if path:
        for key, value in _read_yaml(path).items():
            raw[key] = (value, f"in {path}")
    for key in FIELDS:
        if env_name(key) in environ:
            raw[key] = (environ[env_name(key)], f"from {env_name(key)}")
    for key, value in (flags or {}).items():
        if key in FIELDS and value is not None:
            raw[key] = (value, f"from {flag_name(key)}")

    values: dict[str, Any] = {}
    for key, spec in FIELDS.items():
        if key not in raw:
            if spec.metadata["required"]:
                raise ConfigError(key, f"required (set it in the config file, {env_name(key)} or {flag_name(key)})")
            continue
        value, origin = raw[key]
        try:
            values[key] = spec.metadata["parse"](value)
        except ValueError as exc:
            raise ConfigError(key, f"{exc} ({origin})") from None
    settings = Settings(**values)
    if settings.retry_backoff > settings.retry_backoff_max:
        raise ConfigError("retry_backoff", "must not exceed retry_backoff_max")
    return settings


# FOREMAN_* variables that are not settings but are still ours (the CLI's, the YAML path).
_OTHER_VARIABLES = frozenset({"FOREMAN_CONFIG", "FOREMAN_URL"})


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """FOREMAN_* variables that name no setting: most likely typos, worth a warning."""
    environ = os.environ if environ is None else environ
    known = {env_name(key) for key in FIELDS} | _OTHER_VARIABLES
    return sorted(name for name in environ if name.startswith("FOREMAN_") and name not in known)
