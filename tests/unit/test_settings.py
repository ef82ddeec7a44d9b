"""Configuration: kryten-userstats config.json, ${VAR} expansion, env overrides, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from userstats.ingest.stream_setup import stream_config
from userstats.shared import settings, settings_load, subjects
from userstats.shared.projection import CAPTURED_SUBJECTS
from userstats.shared.settings_load import ConfigError

KRYTEN_EXAMPLE = {
    "service": {"name": "userstats", "version": "0.7.1", "heartbeat_interval": 30},
    "nats": {"servers": ["nats://localhost:4222"], "user": "${NATS_USER}", "password": "${NATS_PASSWORD}"},
    "channels": [{"domain": "cytu.be", "channel": "420Grindhouse"}],
    "database": {"path": "data/userstats.duckdb"},
    "metrics": {"port": 28282},
    "snapshots": {"interval_seconds": 300},
    "kudos": {"default_phrases": ["lol", "rofl", "lmao", "haha", "😂"]},
    "log_level": "INFO",
    "retry_attempts": 3,
}


def write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(data))
    return p


def test_kryten_config_with_placeholders(tmp_path: Path) -> None:
    s = settings_load.load(
        write(tmp_path, KRYTEN_EXAMPLE), env={"NATS_USER": "bot", "NATS_PASSWORD": "s3cret"}
    )
    assert s.nats.user == "bot" and s.nats.password == "s3cret"
    assert s.default_domain == "cytu.be" and s.default_channel == "420Grindhouse"
    assert s.kudos.default_phrases[-1] == "😂"
    assert settings.redacted(s)["nats"]["password"] == "***"


def test_unset_placeholder_names_the_key_and_variable(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"\$\.nats\.password: environment variable NATS_PASSWORD is not set"
    ):
        settings_load.load(write(tmp_path, KRYTEN_EXAMPLE), env={"NATS_USER": "bot"})


def test_placeholder_default(tmp_path: Path) -> None:
    cfg = {"nats": {"servers": ["${NATS_URL_X:-nats://10.0.0.1:4222}"]}}
    assert settings_load.load(write(tmp_path, cfg), env={}).nats.servers == ["nats://10.0.0.1:4222"]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"metrics": {"port": 70000}}, r"\$\.metrics\.port"),
        ({"metrics": {"port": "http"}}, r"\$\.metrics\.port"),
        ({"channels": [{"domain": "cytu.be"}]}, r"channel.*\$\.channels\[0\]"),
        ({"nats": {"servers": []}}, r"\$\.nats\.servers"),
        ({"service": {"heartbeat_interval": 1}}, r"\$\.service\.heartbeat_interval"),
        ({"log_level": "LOUD"}, r"\$\.log_level"),
        ({"userstats": {"stream": "has space"}}, r"\$\.userstats\.stream"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_load.load(write(tmp_path, cfg), env={})


def test_not_json_and_not_object(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        settings_load.load(p, env={})
    p.write_text("[1]")
    with pytest.raises(ConfigError, match="JSON object"):
        settings_load.load(p, env={})


def test_env_overrides_win_and_are_named_on_error(tmp_path: Path) -> None:
    env = {
        "NATS_URL": "nats://a:1,nats://b:2",
        "USERSTATS_CHANNELS": "cytu.be/One, cy.tube/Two",
        "USERSTATS_METRICS_PORT": "29999",
        "USERSTATS_COUNT_SHADOW_MUTED": "true",
    }
    s = settings_load.load(None, env=env)
    assert s.nats.servers == ["nats://a:1", "nats://b:2"]
    assert [(c.domain, c.channel) for c in s.channels] == [("cytu.be", "One"), ("cy.tube", "Two")]
    assert s.metrics.port == 29999 and s.userstats.count_shadow_muted is True
    with pytest.raises(ConfigError, match="USERSTATS_METRICS_PORT"):
        settings_load.load(None, env={"USERSTATS_METRICS_PORT": "0"})
    with pytest.raises(ConfigError, match="domain/channel"):
        settings_load.load(None, env={"USERSTATS_CHANNELS": "nodomain"})


def test_defaults_without_any_file() -> None:
    s = settings_load.load(None, env={})
    assert s.metrics.port == 28282 and s.userstats.ingest_port == 28283
    assert s.nats.servers == ["nats://127.0.0.1:4222"]
    assert s.default_domain == "cytu.be" and s.default_channel is None


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"metrcs": {"port": 1234}}, "$.metrcs (did you mean 'metrics'?)"),
        (
            {"userstats": {"batch_max_event": 5}},
            "$.userstats.batch_max_event (did you mean 'batch_max_events'?)",
        ),
        ({"channels": [{"domain": "d", "chanel": "c"}]}, "$.channels[0].chanel (did you mean 'channel'?)"),
        ({"nats": {"server": ["nats://h:4222"]}}, "$.nats.server (did you mean 'servers'?)"),
        ({"zzzz": 1}, "$.zzzz (known here: channels, chat_jitter"),
    ],
)
def test_unknown_keys_are_named_with_the_close_match(
    tmp_path: Path, cfg: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings_load.load(write(tmp_path, cfg), env={})
    assert str(info.value).startswith(f"unknown key in {tmp_path / 'config.json'}: {message}")


def test_keys_only_kryten_userstats_knows_and_comments_are_accepted(tmp_path: Path) -> None:
    cfg = {
        **KRYTEN_EXAMPLE,
        "service": {
            **KRYTEN_EXAMPLE["service"],
            "enable_lifecycle": True,
            "health_port": 1,
            "metrics_path": "/m",
        },
        "metrics": {"port": 28282, "health_path": "/h", "metrics_path": "/m"},
        "handler_timeout": 30,
        "retry_delay": 1,
        "max_concurrent_handlers": 5,
        "chat_min_delay": 1,
        "chat_jitter": 0.5,
        "_comment": "ours",
        "$schema": "x",
    }
    assert (
        settings_load.load(write(tmp_path, cfg), env={"NATS_USER": "u", "NATS_PASSWORD": "p"}).metrics.port
        == 28282
    )


def test_credentials_inside_server_urls_are_masked() -> None:
    s = settings_load.load(
        None, env={"NATS_URL": "nats://bot:hunter2@h1:4222,nats://t0ken@h2:4222,nats://h3:4222"}
    )
    assert settings.redacted(s)["nats"]["servers"] == [
        "nats://bot:***@h1:4222",
        "nats://***@h2:4222",
        "nats://h3:4222",
    ]


def test_stream_capture_chooses_the_stream_subjects_and_refuses_other_values() -> None:
    projected = stream_config(settings_load.load(None, env={}).userstats)
    assert projected.subjects == CAPTURED_SUBJECTS and subjects.EVENTS_WILDCARD not in CAPTURED_SUBJECTS
    everything = stream_config(settings_load.load(None, env={"USERSTATS_STREAM_CAPTURE": "all"}).userstats)
    assert everything.subjects == subjects.STREAM_SUBJECTS
    with pytest.raises(ConfigError, match="USERSTATS_STREAM_CAPTURE"):
        settings_load.load(None, env={"USERSTATS_STREAM_CAPTURE": "some"})
