"""One settings object, read from the environment."""

from __future__ import annotations

import difflib
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit


class SettingError(SystemExit):
    """A SUNLIGHT_ variable that cannot be read, said in one line. `sunlight` says it as it says a
    catalog, a store URL or a notice channel it refuses (`sunlight: ...`, exit status 2: a
    setting's error was said without the prefix, with status 1; found by a black-box test);
    elsewhere it ends the process as the SystemExit it is."""


log = logging.getLogger(__name__)

# Every variable Sunlight reads, here or in a command (tests/unit/test_settings_names.py holds it to
# the names the code reads).
VARIABLES = frozenset({
    "SUNLIGHT_APP_ID", "SUNLIGHT_BROKER_FLAVOUR", "SUNLIGHT_CALENDAR_OVERRIDES",
    "SUNLIGHT_CASE_RETENTION_DAYS", "SUNLIGHT_CATALOG", "SUNLIGHT_CLICKHOUSE", "SUNLIGHT_DATA_DIR",
    "SUNLIGHT_EMBEDDED_BROKER_PORT", "SUNLIGHT_FETCH_MAX_WAIT", "SUNLIGHT_FLUSH_INTERVAL",
    "SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD", "SUNLIGHT_GRAFANA_TOKEN", "SUNLIGHT_GRAFANA_URL",
    "SUNLIGHT_HTTP_PORT", "SUNLIGHT_KAFKA", "SUNLIGHT_MAIL_FROM", "SUNLIGHT_METRICS_PORT",
    "SUNLIGHT_NEW_USER_PASSWORD", "SUNLIGHT_NOTICE_ATTEMPTS", "SUNLIGHT_NOTICE_CONCURRENCY",
    "SUNLIGHT_NOTICE_RESEND_AFTER", "SUNLIGHT_NOTICE_RESEND_ROUNDS", "SUNLIGHT_NOTICE_RETRY_SECONDS",
    "SUNLIGHT_NOTICE_TEMPLATES", "SUNLIGHT_PARTITIONS", "SUNLIGHT_PUBLIC_URL", "SUNLIGHT_REPLY_LINK_DAYS",
    "SUNLIGHT_RULEBOOK", "SUNLIGHT_SECRET_KEY", "SUNLIGHT_SESSION_TIMEOUT", "SUNLIGHT_SINK_MAX_PENDING_ROWS",
    "SUNLIGHT_SMTP", "SUNLIGHT_STOP_SECONDS", "SUNLIGHT_TANSU", "SUNLIGHT_TICKETS", "SUNLIGHT_TICK_INTERVAL",
    "SUNLIGHT_TRANSACTION_TIMEOUT",
    "SUNLIGHT_UNIT_MAX_MESSAGES", "SUNLIGHT_USERS", "SUNLIGHT_WEBHOOK"
})
_told: set[str] = set()


def unknown_variables(env: dict[str, str]) -> list[str]:
    """What to say of each SUNLIGHT_ variable in `env` that Sunlight does not read, with the name
    it is closest to: a misspelt name left its setting at the default, with nothing said (found by
    a black-box test: SUNLIGHT_FLUSH_INTERVL=5)."""
    said = []
    for name in sorted(k for k in env if k.startswith("SUNLIGHT_") and k not in VARIABLES):
        prefix = len("SUNLIGHT_")  # compared without it: every name shares it
        close = difflib.get_close_matches(name[prefix:], [v[prefix:] for v in VARIABLES], n=1)
        said.append(f"{name} is not a setting Sunlight reads, and is ignored"
                    + (f": did you mean SUNLIGHT_{close[0]}?" if close else ""))
    return said


def _retention(env: dict[str, str], shared_store: bool) -> float | None:
    """The days a settled case stays in a worker's table; None: every case stays. Unset, 30, but
    none on a Kafka cluster with the embedded store: a case let go is read back from the store, and
    the embedded store is its own process's, while another worker may take the case's partition
    and read it back from another store, without the events this one wrote (false red
    skipped_node cards: a two-worker test's flake). Set, it is taken: a lone worker's choice."""
    value = (env.get("SUNLIGHT_CASE_RETENTION_DAYS") or "").strip().lower()
    if value == "never" or (not value and not shared_store):
        return None
    try:
        days = _float(env, "SUNLIGHT_CASE_RETENTION_DAYS", 30.0)
    except SettingError:  # said whole: 'never' is a value too
        days = -1.0
    if not 0 <= days < 10 ** 6:
        raise SettingError(f"SUNLIGHT_CASE_RETENTION_DAYS must be a number of days (0 or more) or 'never', "
                           f"got {value!r}")
    return days


def _public_url(env: dict[str, str]) -> str | None:
    """The console's address, the start of every reply link mailed: a web address (before, one
    without its scheme was taken, and the links in notices were no links at all; found by a
    black-box test)."""
    value = (env.get("SUNLIGHT_PUBLIC_URL") or "").strip()
    if not value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port  # a port that is no number, or out of range (review: `https://x:99999` passed)
    except ValueError:  # an unclosed [IPv6] address (a traceback before: found by review)
        parts, port = None, None
    if parts is None or parts.scheme.lower() not in ("https", "http") or not parts.hostname or parts.query \
            or parts.fragment or any(c.isspace() for c in value) or port == 0:
        raise SettingError(f"SUNLIGHT_PUBLIC_URL must be the console's web address, starting https:// "
                           f"(e.g. https://sunlight.example.gov.cn), got {value!r}")
    if parts.path.strip("/"):
        # The console's pages link to its root (/cases/..., /tickets, /login): behind a path, every
        # link but the mailed ones led off the console (found by review).
        raise SettingError(f"SUNLIGHT_PUBLIC_URL must be the console's own address, without a path (the console is "
                           f"served at the root of its address: give it a host name of its own, e.g. "
                           f"https://sunlight.example.gov.cn), got {value!r}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingError(f"{name} must be a number, got {value!r}") from None


def _bounded(env: dict[str, str], name: str, default: float, *, least: float, above: bool = False,
             whole: bool = False, most: float | None = None) -> float:
    """A finite number from the environment of at least `least` (more than it with `above`; a
    whole number with `whole`), else a one-line error: a bad value gave a traceback, a hang that
    ignored SIGTERM (no room for rows), or an idle worker burning a core (timers every 0 s),
    found by a black-box test."""
    value = _float(env, name, default)
    if (not math.isfinite(value) or value < least or (above and value == least)
            or (whole and value != int(value)) or (most is not None and value > most)):
        kind = "a whole number" if whole else "a number"
        bound = f"more than {least:g}" if above else f"{least:g} or more"
        bound += f" and at most {most:g}" if most is not None else ""
        raise SettingError(f"{name} must be {kind} of {bound}, got {env.get(name)!r}")
    return int(value) if whole else value


def _flavour(env: dict[str, str]) -> str:
    value = (env.get("SUNLIGHT_BROKER_FLAVOUR") or "kafka").strip().lower()
    if value not in ("kafka", "tansu"):
        raise SettingError(f"SUNLIGHT_BROKER_FLAVOUR must be kafka or tansu, "
                           f"got {env.get('SUNLIGHT_BROKER_FLAVOUR')!r}")
    return value


def _bootstrap(env: dict[str, str]) -> str | None:
    """The Kafka cluster's bootstrap servers, `host:port[,host:port...]` (a host alone is on 9092);
    a list that is none is a one-line error (before, `host:notaport` gave two tracebacks from deep
    in the Kafka client; found by a black-box test)."""
    value = (env.get("SUNLIGHT_KAFKA") or "").strip()
    if not value:
        return None
    servers = [server.strip() for server in value.split(",")]
    for server in servers:
        host, port = server, "9092"
        if server.startswith("["):  # an IPv6 address: [::1]:9092 (one left open is none: found by review)
            host, closed, rest = server[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ("9092" if not rest else "?")
            host = host if closed else ""
        elif ":" in server:
            host, _, port = server.rpartition(":")
        if not host or any(c.isspace() or c in "/@" for c in host) or not port.isdigit() \
                or not 0 < int(port) <= 65535:
            raise SettingError(f"SUNLIGHT_KAFKA must be the Kafka cluster's bootstrap servers, host:port separated "
                               f"by commas (e.g. kafka-1:9092,kafka-2:9092), got {value!r}")
    return ",".join(servers)


def _port(env: dict[str, str], name: str, default: int) -> int:
    """A TCP port to listen on (0: off, or any free one where the command says so)."""
    value = _float(env, name, default)
    if not 0 <= value <= 65535 or value != int(value):
        raise SettingError(f"{name} must be a port number from 0 to 65535, got {env.get(name)!r}")
    return int(value)


# The sender of notice mail when SUNLIGHT_MAIL_FROM is not set (said at start: many servers refuse it).
DEFAULT_MAIL_FROM = "sunlight@localhost"


@dataclass(frozen=True)
class Settings:
    kafka: str | None = None  # bootstrap servers; None = the embedded broker
    # "tansu" turns on the workarounds for Tansu's quirks (streams/broker.py); the embedded
    # broker is always Tansu, a SUNLIGHT_KAFKA cluster is taken to be Kafka unless told otherwise.
    broker_flavour: str = "kafka"
    clickhouse: str | None = field(default=None, repr=False)  # server URL (may hold a password)
    data_dir: Path = Path("sunlight-data")
    catalog: Path | None = None
    calendar_overrides: Path | None = None
    # The city's scoring rulebook (SUNLIGHT_RULEBOOK): its region names on the dashboards, the
    # console and the notices of `sunlight score`; None: the default (alerts/rulebooks/wuxi.yaml).
    rulebook: Path | None = None
    app_id: str = "sunlight"
    partitions: int = 4
    # Seconds between writes to ClickHouse (sooner when flush_rows are waiting), and between looks
    # at the deadline index: an alert is queryable within about these (bench/alert_latency.py).
    flush_interval: float = 0.25
    flush_rows: int = 5000
    # How long a worker's stop may take (seconds) before it exits at once, saying so: a stop waits
    # on the broker (a commit) and the store, and waited for ever on a broker gone away. Under the
    # supervisor's grace period (deploy/: 60 s and more).
    stop_seconds: float = 50.0
    # How long the broker may hold a consumer's fetch (seconds); None: Faust's 1.5 s, or 0.1 s
    # on Tansu, embedded or not (see streams.broker).
    fetch_max_wait: float | None = None
    # On Tansu, how long a partition is held at a transaction whose producer has written neither
    # its commit nor its abort marker, before its records are dead-lettered and the partition read
    # on (Kafka's transaction.timeout.ms; streams/faust_patches.py, patch 13).
    transaction_timeout: float = 60.0
    # Rows buffered while ClickHouse is failing before the stream stops taking messages.
    sink_max_pending_rows: int = 50000
    # At most this many messages in one unit (one partition's fetch, taken as a whole; Faust's
    # broker_max_poll_records). Larger units cost less per event and delay a commit longer.
    unit_max_messages: int = 2000
    tick_interval: float = 0.25
    catalog_reload_interval: float = 2.0
    # The consumer group's session timeout; None: 6 s on Tansu (whose joins wait about half of
    # it), 2 s for a worker with its own embedded broker (the only member), 30 s on Kafka.
    session_timeout: float | None = None
    case_events_topic: str = "case-events"
    alerts_topic: str = "alerts"
    dlq_topic: str = "case-events-dlq"
    ticks_topic: str = "sunlight-case-ticks"
    peers_topic: str = "sunlight-penalty-peers"
    ticket_actions_topic: str = "ticket-actions"  # actions on tickets, from the CLI or a city's OA system
    ticket_ticks_topic: str = "sunlight-ticket-ticks"
    # Which alerts open supervision tickets and their ladders (YAML, see docs/tickets.md);
    # None: every red rule, settling 1 h, 3 working days to reply, level 2 two working days later.
    tickets_policy: Path | None = None
    notice_templates: Path | None = None  # a directory of notice templates (default: sinks/templates)
    notices_topic: str = "sunlight-notices"
    smtp: str | None = None  # smtp://user:password@host:587?starttls=1 (never logged)
    mail_from: str = DEFAULT_MAIL_FROM
    webhook: str | None = None  # a JSON webhook for notices (WeCom/DingTalk bridges)
    notify: bool = True  # send notices (`replay` and `import` turn it off unless --notify)
    # Tried for about two minutes (0.5, 1, 2 ... 30, 30, 30 s apart): a mail server restarted for
    # half a minute lost every notice due meanwhile with 4 attempts (3.5 s).
    notice_attempts: int = 10
    notice_retry_seconds: float = 0.5  # doubles with each attempt, at most 30 s
    notice_concurrency: int = 8  # notices delivered at once (each ticket's in order)
    # A failed notice is sent again by the worker itself this long (seconds) after it failed, then
    # after twice as long at each later round, at most 6 h apart, for `notice_resend_rounds` rounds
    # in all (alerts.notices.ResendPolicy); 0: only when asked (`sunlight notices resend`).
    notice_resend_after: float = 600.0
    notice_resend_rounds: int = 8
    # The worker's HTTP port for /metrics (Prometheus), /healthz and /readyz; 0 turns it off, so
    # that several workers can share a host (each with its own port).
    metrics_port: int = 9464
    embedded_broker_port: int = 0  # the port of a broker a process starts itself (0: any free one)
    grafana_url: str | None = None  # `sunlight dashboards push`: the Grafana to provision
    grafana_token: str | None = field(default=None, repr=False)  # its service-account token (never logged)
    # The password of the Grafana datasource's ClickHouse user (kept only in Grafana's secureJsonData).
    grafana_clickhouse_password: str | None = field(default=None, repr=False)
    # The console (`sunlight serve`): its port, the address people reach it at (links in notices
    # start there), the key that signs sessions and links (never logged), and the users file.
    http_port: int = 8080
    public_url: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    users_file: Path | None = None
    reply_link_days: float = 14.0  # how long a notice's reply link stays valid (SUNLIGHT_REPLY_LINK_DAYS)
    # How long (days, on the stream clock) a settled case stays in the worker's table after its
    # last event before it is let go (alerts.retention; read back from the store if anything about
    # it arrives later); None (SUNLIGHT_CASE_RETENTION_DAYS=never): every case stays. Read from the
    # environment (`from_env`), unset, it is None on a Kafka cluster with the embedded store
    # (`_retention`); this default applies to settings made in code.
    case_retention_days: float | None = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        for said in unknown_variables(env):
            if said not in _told:  # once per process: the settings are read by several parts
                _told.add(said)
                log.warning(said)
        overrides = env.get("SUNLIGHT_CALENDAR_OVERRIDES")
        catalog = env.get("SUNLIGHT_CATALOG")
        kafka, clickhouse = _bootstrap(env), env.get("SUNLIGHT_CLICKHOUSE") or None
        return cls(
            kafka=kafka,
            broker_flavour=_flavour(env),
            clickhouse=clickhouse,
            data_dir=Path(env.get("SUNLIGHT_DATA_DIR") or "sunlight-data"),
            catalog=Path(catalog) if catalog else None,
            calendar_overrides=Path(overrides) if overrides else None,
            rulebook=Path(env["SUNLIGHT_RULEBOOK"]) if env.get("SUNLIGHT_RULEBOOK") else None,
            app_id=env.get("SUNLIGHT_APP_ID") or "sunlight",
            partitions=_bounded(env, "SUNLIGHT_PARTITIONS", 4, least=1, whole=True),
            flush_interval=_bounded(env, "SUNLIGHT_FLUSH_INTERVAL", 0.25, least=0, above=True),
            stop_seconds=_bounded(env, "SUNLIGHT_STOP_SECONDS", 50.0, least=0, above=True),
            tick_interval=_bounded(env, "SUNLIGHT_TICK_INTERVAL", 0.25, least=0, above=True),
            unit_max_messages=_bounded(env, "SUNLIGHT_UNIT_MAX_MESSAGES", 2000, least=1, whole=True),
            sink_max_pending_rows=_bounded(env, "SUNLIGHT_SINK_MAX_PENDING_ROWS", 50000, least=1, whole=True),
            fetch_max_wait=(_bounded(env, "SUNLIGHT_FETCH_MAX_WAIT", 0, least=0)
                            if env.get("SUNLIGHT_FETCH_MAX_WAIT") else None),
            transaction_timeout=_bounded(env, "SUNLIGHT_TRANSACTION_TIMEOUT", 60.0, least=0, above=True),
            session_timeout=(_bounded(env, "SUNLIGHT_SESSION_TIMEOUT", 0, least=0, above=True)
                             if env.get("SUNLIGHT_SESSION_TIMEOUT") else None),
            tickets_policy=Path(env["SUNLIGHT_TICKETS"]) if env.get("SUNLIGHT_TICKETS") else None,
            notice_templates=Path(env["SUNLIGHT_NOTICE_TEMPLATES"]) if env.get("SUNLIGHT_NOTICE_TEMPLATES") else None,
            smtp=env.get("SUNLIGHT_SMTP") or None,
            mail_from=env.get("SUNLIGHT_MAIL_FROM") or DEFAULT_MAIL_FROM,
            webhook=env.get("SUNLIGHT_WEBHOOK") or None,
            notice_attempts=_bounded(env, "SUNLIGHT_NOTICE_ATTEMPTS", 10, least=1, whole=True),
            notice_retry_seconds=_bounded(env, "SUNLIGHT_NOTICE_RETRY_SECONDS", 0.5, least=0),
            notice_concurrency=_bounded(env, "SUNLIGHT_NOTICE_CONCURRENCY", 8, least=1, whole=True),
            # At most 30 days (1e15 s overflowed a timedelta: found by a black-box test).
            notice_resend_after=_bounded(env, "SUNLIGHT_NOTICE_RESEND_AFTER", 600.0, least=0, most=30 * 86400.0),
            notice_resend_rounds=_bounded(env, "SUNLIGHT_NOTICE_RESEND_ROUNDS", 8, least=0, whole=True),
            metrics_port=_port(env, "SUNLIGHT_METRICS_PORT", 9464),
            embedded_broker_port=_port(env, "SUNLIGHT_EMBEDDED_BROKER_PORT", 0),
            grafana_url=env.get("SUNLIGHT_GRAFANA_URL") or None,
            grafana_token=env.get("SUNLIGHT_GRAFANA_TOKEN") or None,
            grafana_clickhouse_password=env.get("SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD") or None,
            http_port=_port(env, "SUNLIGHT_HTTP_PORT", 8080),
            public_url=_public_url(env),
            secret_key=env.get("SUNLIGHT_SECRET_KEY") or None,
            users_file=Path(env["SUNLIGHT_USERS"]) if env.get("SUNLIGHT_USERS") else None,
            reply_link_days=_bounded(env, "SUNLIGHT_REPLY_LINK_DAYS", 14.0, least=0, above=True),
            case_retention_days=_retention(env, shared_store=kafka is None or clickhouse is not None),
        )

    @property
    def case_retention(self) -> timedelta | None:
        return timedelta(days=self.case_retention_days) if self.case_retention_days is not None else None

    @property
    def embedded_store(self) -> bool:
        return self.clickhouse is None

    @property
    def isolation_level(self) -> str:
        """How consumers read: past a transaction another client aborted (`read_committed`), on a
        Kafka cluster; on Tansu, which gives a `read_committed` consumer aborted records too and
        holds it for good at a transaction that is never ended, every record, each transaction
        decided by its marker in the log (`transaction_timeout`, `docs/faults.md`)."""
        return "read_uncommitted" if self.tansu else "read_committed"

    @property
    def tansu(self) -> bool:
        """Is the broker Tansu (the embedded one, or a cluster declared as such)?"""
        return self.kafka is None or self.broker_flavour == "tansu"
