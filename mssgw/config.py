"""Settings: one TOML file, environment overrides, validated at start.

Why a hand-written schema rather than a validation library: the error an
operator sees must name the file, the key, the value and what was expected,
in one line, and the schema doubles as the reference for
``config/mssgw.example.toml`` (a test checks that every key documented there
exists here and the reverse).

Environment overrides: ``MSSGW_<SECTION>__<KEY>`` (one ``__`` between each
level, e.g. ``MSSGW_STORE__URL``, ``MSSGW_LISTENERS__IMAP__PORT``).  Values
are parsed as TOML scalars when they look like one (``true``, ``42``,
``["a","b"]``) and taken as strings otherwise.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from mssgw.errors import ConfigError
from mssgw.text import is_digits

ENV_PREFIX = "MSSGW_"
#: Upper bound of ``store.inline_max``: beyond it a row gets heavy for the database.
INLINE_LIMIT = 1 << 20
#: Upper bound of ``gateway.workers``.
MAX_WORKERS = 64
TlsMode = Literal["none", "starttls", "implicit"]
TlsProfile = Literal["mssante", "modern"]

_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)


@dataclass(frozen=True)
class GatewaySettings:
    """Who we are on the network."""

    hostname: str = "localhost"
    domains: list[str] = field(default_factory=list)
    state_dir: str = "var/mssgw"
    #: Processes serving the listeners (see mssgw.workers); 0: one per core.
    workers: int = 1


@dataclass(frozen=True)
class StoreSettings:
    """Where metadata and message bytes live."""

    url: str = ""
    blob_dir: str = ""
    busy_timeout_ms: int = 5000
    pool_size: int = 10
    group_commit_max: int = 64
    node_notifications: bool = True
    #: Messages up to this many octets are kept in the database (see store.content).
    inline_max: int = 131072


@dataclass(frozen=True)
class TlsSettings:
    """Certificates and the TLS profile (SPEC TLS-1…4)."""

    profile: TlsProfile = "mssante"
    certificate: str = ""
    key: str = ""
    client_certificate: str = ""
    client_key: str = ""
    anchors: str = ""
    crls: list[str] = field(default_factory=list)
    reload_interval: int = 30


@dataclass(frozen=True)
class TrustSettings:
    """The liste blanche (SPEC TRUST-1…3)."""

    liste_blanche_url: str = ""
    liste_blanche_file: str = ""
    expected_signer: str = ""
    refresh_interval: int = 3600
    max_age_hours: int = 48


@dataclass(frozen=True)
class ListenerSettings:
    """One listening socket."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 0
    tls: TlsMode = "none"


def _listener(port: int, tls: TlsMode) -> Callable[[], ListenerSettings]:
    """Default factory of one listener: every address, its standard port."""
    return lambda: ListenerSettings(True, "0.0.0.0", port, tls)


@dataclass(frozen=True)
class ListenersSettings:
    """Every listener the daemon may open."""

    mta: ListenerSettings = field(default_factory=_listener(25, "starttls"))
    submission: ListenerSettings = field(default_factory=_listener(587, "starttls"))
    submissions: ListenerSettings = field(default_factory=_listener(465, "implicit"))
    imap: ListenerSettings = field(default_factory=_listener(143, "starttls"))
    imaps: ListenerSettings = field(default_factory=_listener(993, "implicit"))
    http: ListenerSettings = field(default_factory=_listener(8080, "none"))


@dataclass(frozen=True)
class LimitsSettings:
    """Bounds that protect the daemon and the trust space (SPEC FLOW-6)."""

    max_message_size: int = 50 * 1024 * 1024
    patient_max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    max_line_length: int = 4096
    max_connections: int = 1000
    max_connections_per_ip: int = 50
    imap_max_literal: int = 50 * 1024 * 1024
    imap_max_connections_per_identity: int = 20
    idle_timeout: int = 1800
    command_timeout: int = 300


ReplicaKind = Literal["sql", "ldap"]


@dataclass(frozen=True)
class DirectorySettings:
    """The national directory replica (SPEC DIR-1…4); see docs/directory.md."""

    replica: ReplicaKind = "sql"
    ldap_url: str = ""
    ldap_bind_dn: str = ""
    ldap_password_file: str = ""
    ldap_base: str = "ou=mssante,dc=example,dc=org"
    fhir_url: str = "https://gateway.api.esante.gouv.fr/fhir/v2"
    fhir_api_key_file: str = ""
    publish_url: str = ""
    #: Credentials for ``--source ldap:URL`` (anonymous when empty).
    upstream_bind_dn: str = ""
    upstream_password_file: str = ""
    #: A full source that would remove more than this share of the national
    #: rows is refused (a truncated download must not empty the directory).
    max_removal_share: float = 0.10
    #: A source with more than this share of invalid lines is refused.
    max_invalid_share: float = 0.01
    cache_ttl: int = 300
    negative_ttl: int = 60
    lookup_timeout: float = 2.0
    cache_max_entries: int = 200_000
    batch_size: int = 2000


@dataclass(frozen=True)
class SubmissionSettings:
    """What our users may send (SPEC FLOW-2, PAT-1, PAT-4)."""

    #: The patient messaging domain (Mon espace santé).
    patient_domain: str = "patient.mssante.fr"
    #: Whether APP mailboxes may write to patients (PAT-4).
    patient_allow_app: bool = False
    #: A remote address absent from the directory replica: "accept" (traced) or "refuse".
    unknown_remote_recipient: Literal["accept", "refuse"] = "accept"


@dataclass(frozen=True)
class RelaySettings:
    """Outbound delivery to other operators (SPEC FLOW-3, FLOW-4)."""

    #: Delays in seconds between attempts; the last one repeats until ``give_up_after``.
    retry_schedule: list[int] = field(
        default_factory=lambda: [300, 600, 1200, 2400, 4800, 9600, 14400]
    )
    #: Send a "delayed" DSN once a message has waited this long (seconds).
    delay_notice_after: int = 4 * 3600
    #: Bounce with a failure DSN after this long (seconds).
    give_up_after: int = 5 * 86400
    #: Concurrent deliveries per node.
    workers: int = 4
    #: Seconds for connecting and for each SMTP reply.
    connect_timeout: int = 30
    command_timeout: int = 300
    #: Static routes "domain = host:port" used instead of MX records (tests, smart hosts).
    routes: dict[str, str] = field(default_factory=dict)
    #: Seconds between polls of the queue when idle.
    poll_interval: int = 5
    #: Days delivered and failed queue rows (and their history) are kept.
    keep_finished_days: int = 30


@dataclass(frozen=True)
class TracesSettings:
    """Retention of the audit traces (SPEC TRACE-1), purged daily by the daemon."""

    transport_retention_days: int = 365
    client_retention_days: int = 183


@dataclass(frozen=True)
class LoggingSettings:
    """What the daemon writes to its log (never content, passwords or tokens)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class Settings:
    """The whole configuration; ``source`` names the file it came from."""

    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    listeners: ListenersSettings = field(default_factory=ListenersSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    submission: SubmissionSettings = field(default_factory=SubmissionSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    traces: TracesSettings = field(default_factory=TracesSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str = "<defaults>"

    @property
    def state_dir(self) -> Path:
        return Path(self.gateway.state_dir)

    @property
    def store_url(self) -> str:
        """The database URL, defaulting to SQLite inside the state folder."""
        return self.store.url or f"sqlite:///{self.state_dir / 'mssgw.db'}"

    @property
    def blob_dir(self) -> Path:
        return Path(self.store.blob_dir) if self.store.blob_dir else self.state_dir / "blobs"


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge environment overrides, validate.  Raise ``ConfigError``."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data = _read_toml(Path(path))
    _apply_env(data, env, source)
    settings: Settings = replace(_build(Settings, data, source, ()), source=source)
    _resolve_relative(settings, Path(path).parent if path is not None else Path.cwd())
    validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _apply_env(data: dict[str, Any], env: Mapping[str, str], source: str) -> None:
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "MSSGW_CONFIG":
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment {name}: {key} is not a table in {source}")
            node = child
        node[keys[-1]] = _parse_env_value(value)


def _parse_env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _build(cls: type[Any], data: Any, source: str, path: tuple[str, ...]) -> Any:
    where = ".".join(path) or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{where}] must be a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - known)
    if unknown:
        key = ".".join((*path, unknown[0]))
        raise ConfigError(
            f"{source}: unknown key {key!r}; known keys here: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for name in known & set(data):
        values[name] = _coerce(hints[name], data[name], source, (*path, name))
    if cls is ListenerSettings and path:
        values = {**_listener_defaults(path[-1]), **values}
    return cls(**values)


def _listener_defaults(name: str) -> dict[str, Any]:
    default = getattr(ListenersSettings(), name, ListenerSettings())
    return {f.name: getattr(default, f.name) for f in fields(ListenerSettings)}


def _coerce(hint: Any, value: Any, source: str, path: tuple[str, ...]) -> Any:
    key = ".".join(path)
    if isinstance(hint, type) and is_dataclass(hint):
        return _build(hint, value, source, path)
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{source}: {key} = {value!r}: expected one of {', '.join(map(repr, allowed))}"
            )
        return value
    if origin is dict:
        _, item = get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} = {value!r}: expected a table")
        return {str(k): _coerce(item, v, source, (*path, str(k))) for k, v in value.items()}
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} = {value!r}: expected a list of {item.__name__}")
        return [_coerce(item, v, source, (*path,)) for v in value]
    checks: dict[Any, Callable[[Any], bool]] = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }
    if hint in checks and not checks[hint](value):
        raise ConfigError(f"{source}: {key} = {value!r}: expected {_describe(hint)}")
    return float(value) if hint is float else value


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))


def _resolve_relative(settings: Settings, base: Path) -> None:
    """Relative paths in a file are relative to that file, not to the cwd."""
    if settings.source == "<defaults>":
        return

    def fix(p: str) -> str:
        return p if not p or os.path.isabs(p) else str((base / p).resolve())

    object.__setattr__(settings.gateway, "state_dir", fix(settings.gateway.state_dir))
    object.__setattr__(settings.store, "blob_dir", fix(settings.store.blob_dir))
    for name in ("certificate", "key", "client_certificate", "client_key", "anchors"):
        object.__setattr__(settings.tls, name, fix(getattr(settings.tls, name)))
    object.__setattr__(settings.tls, "crls", [fix(p) for p in settings.tls.crls])
    object.__setattr__(settings.trust, "liste_blanche_file", fix(settings.trust.liste_blanche_file))
    for name in ("ldap_password_file", "fhir_api_key_file", "upstream_password_file"):
        object.__setattr__(settings.directory, name, fix(getattr(settings.directory, name)))
    url = settings.store.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        object.__setattr__(settings.store, "url", f"sqlite:///{fix(rel)}")


# --------------------------------------------------------------------------- validation


def validate(settings: Settings) -> None:
    """Check cross-field rules; raise ``ConfigError`` naming the key."""
    src = settings.source
    for domain in settings.gateway.domains:
        if not is_domain(domain):
            raise ConfigError(f"{src}: gateway.domains: {domain!r} is not a lower-case domain name")
    if not 0 <= settings.gateway.workers <= MAX_WORKERS:
        raise ConfigError(
            f"{src}: gateway.workers = {settings.gateway.workers}: expected 1 to {MAX_WORKERS}"
            " processes, or 0 for one per core"
        )
    url = settings.store_url
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+asyncpg:", "postgres:")):
        raise ConfigError(
            f"{src}: store.url = {url!r}: expected sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    _positive(src, "store.busy_timeout_ms", settings.store.busy_timeout_ms)
    _positive(src, "store.pool_size", settings.store.pool_size)
    _positive(src, "store.group_commit_max", settings.store.group_commit_max)
    if not 0 <= settings.store.inline_max <= INLINE_LIMIT:
        raise ConfigError(
            f"{src}: store.inline_max = {settings.store.inline_max}: expected 0 (every message"
            f" in a file) to {INLINE_LIMIT} octets"
        )
    for f in fields(LimitsSettings):
        _positive(src, f"limits.{f.name}", getattr(settings.limits, f.name))
    _validate_relay(settings)
    _positive(src, "traces.transport_retention_days", settings.traces.transport_retention_days)
    _positive(src, "traces.client_retention_days", settings.traces.client_retention_days)
    for name in ("max_removal_share", "max_invalid_share"):
        share = getattr(settings.directory, name)
        if not 0.0 <= share <= 1.0:
            raise ConfigError(
                f"{src}: directory.{name} = {share}: expected a share between 0 and 1"
            )
    seen: dict[tuple[str, int], str] = {}
    for f in fields(ListenersSettings):
        lst: ListenerSettings = getattr(settings.listeners, f.name)
        if not lst.enabled:
            continue
        if not 0 <= lst.port <= 65535:
            raise ConfigError(f"{src}: listeners.{f.name}.port = {lst.port}: expected 0..65535")
        if lst.port and (lst.address, lst.port) in seen:
            other = seen[(lst.address, lst.port)]
            raise ConfigError(
                f"{src}: listeners.{f.name}.port = {lst.port}: already used by listeners.{other}"
            )
        seen[(lst.address, lst.port)] = f.name
    if bool(settings.tls.certificate) != bool(settings.tls.key):
        raise ConfigError(f"{src}: tls.certificate and tls.key go together; set both or neither")


def _validate_relay(settings: Settings) -> None:
    src, relay = settings.source, settings.relay
    if not relay.retry_schedule or any(d <= 0 for d in relay.retry_schedule):
        raise ConfigError(
            f"{src}: relay.retry_schedule = {relay.retry_schedule!r}: expected positive delays"
        )
    for key in (
        "delay_notice_after",
        "give_up_after",
        "workers",
        "connect_timeout",
        "command_timeout",
        "poll_interval",
        "keep_finished_days",
    ):
        _positive(src, f"relay.{key}", getattr(relay, key))
    for domain, target in relay.routes.items():
        host, _, port = target.rpartition(":")
        if not is_domain(domain) or not host or not is_digits(port) or not 0 < int(port) < 65536:
            raise ConfigError(
                f'{src}: relay.routes.{domain} = {target!r}: expected a domain = "host:port"'
            )


def _positive(src: str, key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{src}: {key} = {value}: expected a positive integer")


def is_domain(name: str) -> bool:
    """A lower-case DNS name with at least two labels (RFC 1035 §2.3.1)."""
    return bool(_DOMAIN_RE.match(name))


def find_config(explicit: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The file to load: ``--config``, then ``$MSSGW_CONFIG``, then /etc/mssgw."""
    env = os.environ if env is None else env
    if explicit:
        return explicit
    if env.get("MSSGW_CONFIG"):
        return env["MSSGW_CONFIG"]
    default = Path("/etc/mssgw/mssgw.toml")
    return str(default) if default.exists() else None
