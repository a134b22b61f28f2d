"""Settings: layering, parsing, and start-up refusal naming the key."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from foreman.config import FIELDS, load_settings, parse_duration, parse_size, unknown_variables
from foreman.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_layers_defaults_yaml_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "foreman.yaml"
    config.write_text("ollama_url: http://yaml:11434\npoll_interval: 10s\nmax_attempts: 3\nlisten: 0.0.0.0:9000\n")
    env = {"FOREMAN_POLL_INTERVAL": "5m", "FOREMAN_MAX_ATTEMPTS": "4"}
    settings = load_settings({"max_attempts": "7"}, environ=env, config_path=str(config))
    assert settings.ollama_url == "http://yaml:11434"  # YAML over default
    assert settings.poll_interval == 300.0  # env over YAML
    assert settings.max_attempts == 7  # flag over env
    assert settings.listen_port == 9000 and settings.listen_host == "0.0.0.0"
    assert settings.idle_timeout == 120.0  # default


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("ollama_url: http://fromenv:11434/\n")
    settings = load_settings({}, environ={"FOREMAN_CONFIG": str(config)})
    assert settings.ollama_url == "http://fromenv:11434"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        (45, 45),
        ("1.5", 1.5),
        ("1h30m", 5400),
        ("250ms", 0.25),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "-3s", True, "5x"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"), [("64MiB", 64 * 1024**2), (262144, 262144), ("256KiB", 262144), ("1MB", 10**6)]
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ollama_url", "ftp://x"),
        ("listen", "8080"),
        ("max_attempts", "0"),
        ("poll_interval", "never"),
        ("allow_model_management", "maybe"),
        ("max_body", "lots"),
        ("webhook_allow", "10.0.0.0/33"),
        ("idle_timeout", "0"),
        ("job_ttl", "nan"),
        ("poll_interval", "inf"),
        ("first_byte_timeout", "0s"),
    ],
)
def test_bad_value_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"ollama_url": "http://t:1", key: value}, environ={})
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")


def test_webhook_allow_takes_cidrs_and_host_names() -> None:
    allow = "10.0.0.0/8, fd00::/8, receiver.lan, *.example.com, my_receiver"  # "_": a Compose service
    settings = load_settings({"ollama_url": "http://t:1", "webhook_allow": allow}, environ={})
    assert settings.webhook_allow == ("10.0.0.0/8", "fd00::/8", "receiver.lan", "*.example.com", "my_receiver")
    with pytest.raises(ConfigError):
        load_settings({"ollama_url": "http://t:1", "webhook_allow": "receiver/lan"}, environ={})


def test_unknown_yaml_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("ollama_url: http://t:1\npoll_intervall: 5s\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, environ={}, config_path=str(config))
    assert err.value.key == "poll_intervall"


def test_missing_target_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({}, environ={})
    assert err.value.key == "ollama_url" and "FOREMAN_OLLAMA_URL" in str(err.value)


def test_serve_refuses_bad_config_with_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "foreman", "serve", "--ollama-url", "http://t:1", "--idle-timeout", "whenever"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "idle_timeout" in lines[0], proc.stderr


def test_example_config_lists_every_setting() -> None:
    text = (ROOT / "config" / "foreman.example.yaml").read_text()
    missing = [key for key in FIELDS if f"\n{key}:" not in text and f"\n# {key}:" not in text]
    assert not missing, f"config/foreman.example.yaml lacks {missing}"


def test_readme_table_lists_every_setting() -> None:
    text = (ROOT / "README.md").read_text()
    missing = [key for key in FIELDS if f"| `{key}` |" not in text]
    assert not missing, f"README.md settings table lacks {missing}"


def test_unknown_foreman_variables_are_named() -> None:
    environ = {"FOREMAN_OLAMA_URL": "x", "FOREMAN_OLLAMA_URL": "y", "FOREMAN_URL": "z", "HOME": "/"}
    assert unknown_variables(environ) == ["FOREMAN_OLAMA_URL"]


def test_a_failed_start_exits_at_once(tmp_path: Path) -> None:
    """A busy port: one line, exit 1, and no thread left keeping the process alive."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "foreman",
                "serve",
                "--ollama-url",
                "http://127.0.0.1:9",
                "--listen",
                f"127.0.0.1:{port}",
                "--db-path",
                str(tmp_path / "f.db"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert proc.returncode == 1 and "cannot start" in proc.stderr
