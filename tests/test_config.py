"""Configuration: loading, environment overrides, precise errors."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from mssgw import config
from mssgw.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "mssgw.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mssgw.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_loads_and_matches_defaults() -> None:
    loaded = config.load(EXAMPLE, env={})
    defaults = config.Settings()
    assert loaded.listeners == defaults.listeners
    assert loaded.limits == defaults.limits
    assert loaded.tls.profile == "mssante"


def _keys(cls: type, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for f in fields(cls):
        if f.name == "source":
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            out |= _keys(type(default), f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


def _example_keys(data: dict[str, object], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        # An empty table (relay.routes) is a key of its own, a dict setting.
        nested = isinstance(v, dict) and v and not prefix.startswith("relay.routes")
        out |= _example_keys(v, f"{prefix}{k}.") if nested else {prefix + k}
    return out


def test_example_documents_every_key_and_only_real_ones() -> None:
    text = EXAMPLE.read_text()
    assert _example_keys(tomllib.loads(text)) == _keys(config.Settings)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            above = lines[i - 1].strip()
            assert (
                above.startswith("#") or re.match(r"^[a-z_]+ = ", above) or above.startswith("[")
            ), f"key on line {i + 1} of the example has no comment: {line}"


def test_relative_paths_resolve_from_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[gateway]\nstate_dir = "state"\n[tls]\nanchors = "certs/a.pem"\n')
    s = config.load(path, env={})
    assert s.state_dir == tmp_path / "state"
    assert s.tls.anchors == str(tmp_path / "certs" / "a.pem")
    assert s.store_url == f"sqlite:///{tmp_path / 'state' / 'mssgw.db'}"


def test_environment_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "[listeners.imap]\nport = 1143\n")
    env = {
        "MSSGW_LISTENERS__IMAP__PORT": "2143",
        "MSSGW_LOGGING__LEVEL": "debug",
        "MSSGW_GATEWAY__DOMAINS": '["a.mssante.test"]',
        "MSSGW_STORE__URL": "postgresql://u@h/db",
    }
    s = config.load(path, env=env)
    assert s.listeners.imap.port == 2143
    assert s.listeners.imap.tls == "starttls"  # the listener's own default kept
    assert s.logging.level == "debug"
    assert s.gateway.domains == ["a.mssante.test"]
    assert s.store_url == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("[store\n", {}, r"mssgw.toml: invalid TOML"),
        (
            "[store]\nbusy_timeout_ms = 'x'\n",
            {},
            r"store.busy_timeout_ms = 'x': expected an integer",
        ),
        (
            "[tls]\nprofile = 'tls10'\n",
            {},
            r"tls.profile = 'tls10': expected one of 'mssante', 'modern'",
        ),
        ("[gateway]\nhostnam = 'x'\n", {}, r"unknown key 'gateway.hostnam'"),
        ("[listeners.imap]\nport = 70000\n", {}, r"listeners.imap.port = 70000: expected 0..65535"),
        ("[gateway]\ndomains = ['Bad_Domain']\n", {}, r"gateway.domains: 'Bad_Domain'"),
        ("[store]\nurl = 'mysql://x'\n", {}, r"store.url = 'mysql://x'"),
        ("[limits]\nmax_recipients = 0\n", {}, r"limits.max_recipients = 0: expected a positive"),
        ("[store]\ninline_max = -1\n", {}, r"store.inline_max = -1: expected 0 .* to 1048576"),
        ("[store]\ninline_max = 2000000\n", {}, r"store.inline_max = 2000000: expected 0"),
        ("[gateway]\nworkers = 65\n", {}, r"gateway.workers = 65: expected 1 to 64 processes"),
        ("[gateway]\nworkers = -1\n", {}, r"gateway.workers = -1: expected 1 to 64"),
        ("[listeners.imap]\nport = 2000\n[listeners.imaps]\nport = 2000\n", {}, r"already used by"),
        ("", {"MSSGW_LIMITS__NOPE": "1"}, r"unknown key 'limits.nope'"),
        ("[tls]\ncertificate = 'a.pem'\n", {}, r"tls.certificate and tls.key go together"),
    ],
)
def test_errors_name_the_key_and_the_value(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        config.load(path, env=env)
    assert "\n" not in str(info.value)


def test_relay_routes_and_schedule(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[relay]\nretry_schedule = [1, 2]\n[relay.routes]\n"op2.mssante.test" = "127.0.0.1:2525"\n',
    )
    s = config.load(path, env={})
    assert s.relay.routes == {"op2.mssante.test": "127.0.0.1:2525"}
    assert s.relay.retry_schedule == [1, 2]
    bad = _write(tmp_path, '[relay.routes]\n"op2.mssante.test" = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"relay.routes.op2.mssante.test = 'nowhere'"):
        config.load(bad, env={})
    bad = _write(tmp_path, "[relay]\nretry_schedule = []\n")
    with pytest.raises(ConfigError, match=r"relay.retry_schedule = \[\]: expected positive"):
        config.load(bad, env={})


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(bad, env={})
