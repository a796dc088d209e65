"""Settings: environment variables (prefix POOLFIN_) read once by pydantic-settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of every service. Loaded once per process and passed down."""

    model_config = SettingsConfigDict(env_prefix="POOLFIN_", env_file=None, extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/poolfin",
        description="PostgreSQL DSN; each service uses its own schema.",
    )
    group_prefix: str = Field(default="poolfin", description="Consumer group id prefix.")
    topic_partitions: int = Field(default=3, ge=1, description="Partitions of created topics.")
    batch_max_records: int = Field(default=500, ge=1, description="Records per handler batch.")
    batch_timeout_ms: int = Field(default=50, ge=1, description="Max wait to fill a batch.")
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        description="How long the broker may hold a fetch that has no data; "
        "bounds the latency each hop adds when a topic is quiet (aiokafka's default is 500).",
    )
    outbox_batch: int = Field(default=1000, ge=1, description="Rows relayed per round.")
    outbox_poll_ms: int = Field(
        default=200, ge=10, description="Relay poll interval when nothing woke it."
    )
    db_pool_size: int = Field(default=5, ge=1, description="Connections per service.")
    session_timeout_ms: int = Field(default=6000, description="Kafka consumer session timeout.")
    heartbeat_interval_ms: int = Field(default=500, description="Kafka consumer heartbeat.")
    rebalance_timeout_ms: int = Field(default=1000, description="Kafka rebalance timeout.")
    retry_backoff_s: float = Field(
        default=1.0, description="Pause before a batch is re-read after a transient failure."
    )
    settlement_fee_bps: int = Field(
        default=0,
        ge=0,
        le=10000,
        description="Platform fee on the post-repayment remainder, "
        "in basis points (settlement split rule).",
    )
    hold_alert_after_s: float = Field(
        default=3600,
        gt=0,
        description="A payment frozen this long with no instruction from credit raises "
        "FrozenPaymentOverdue on settlement.alerts.v1 (once), for an operator to void or "
        "release it (`poolfin holds void|release`).",
    )
    hold_alert_every_s: float = Field(
        default=30, gt=0, description="How often the splitter looks for overdue frozen payments."
    )
    raise_window_s: float = Field(
        default=3 * 86400,
        gt=0,
        description="How long an investor platform's raise stays open; fully committed by "
        "then, the platform disburses; otherwise the application is refused raise_expired.",
    )
    raise_check_every_s: float = Field(
        default=5, gt=0, description="How often the funding gateway expires overdue raises."
    )
    funder_topics_every_s: float = Field(
        default=5,
        gt=0,
        description="How often the funding gateway creates the request topics of newly "
        "registered funders.",
    )
    unseen_slip_wait_s: float = Field(
        default=30,
        ge=0,
        description="How long intake keeps a buyer's payment naming a settlement slip it has "
        "not seen yet (parked) waiting for that slip; not there by then, the payment is "
        "dead-lettered unknown_receivable. 0: dead-lettered at once.",
    )
    unseen_slip_check_every_s: float = Field(
        default=2,
        gt=0,
        description="How often intake dead-letters parked payments past their wait.",
    )
    kafka_idempotence: bool = Field(
        default=False, description="Idempotent producer (Apache Kafka only)."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR.")
    log_json: bool | None = Field(
        default=None, description="JSON logs; default: JSON unless on a TTY."
    )
    ready_file: str | None = Field(
        default=None,
        description="Written once the service consumes, then touched after every passing "
        "health check: its age tells a supervisor the service is alive (used by `poolfin up`).",
    )
    http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of a service's HTTP front (credit: pool "
        "positions and applications); unset means no HTTP.",
    )
    ops_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of a service's /metrics and /health (shared/ops.py); unset: none. "
        "`poolfin up` gives each service a free one and records it in stack.json.",
    )
    dashboard_port: int = Field(
        default=8700, ge=1, le=65535, description="Port of the dashboard `poolfin up` serves."
    )
    cli_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a command that publishes a request waits for its outcome "
        "(accepted, or refused with the reason) before it gives up (exit 1).",
    )
    traces: str | None = Field(
        default=None,
        description="Where spans go (shared/tracing.py): unset, nowhere (records still carry "
        "traceparent); `otlp` (OTEL_EXPORTER_OTLP_ENDPOINT); `file:DIR` (JSON lines).",
    )
    ops_host: str = Field(default="127.0.0.1", description="Address /metrics and /health bind.")
    health_interval_s: float = Field(
        default=2.0, gt=0, description="How often a service runs its health checks."
    )
    consumer_stall_s: float = Field(
        default=30.0,
        gt=0,
        description="Health goes red when records wait and the group's committed offsets have "
        "not moved for this long.",
    )
    relay_stall_s: float = Field(
        default=30.0,
        gt=0,
        description="Health goes red when the oldest unsent outbox row is older than this.",
    )
    http_publish_timeout_ms: int = Field(
        default=5000,
        ge=100,
        description="How long the HTTP front waits for Kafka to acknowledge an application "
        "(and for each /health check) before it answers 503.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP front binds.")
    timezone: str = Field(
        default="Asia/Shanghai",
        description="The platform's business time zone: money is value-dated on the business "
        "day it arrives there (shared/calendar.py).",
    )
    day_close_lead_days: int = Field(
        default=0,
        ge=0,
        le=3660,
        description="How many days ahead of today an operator may close a pool's business day "
        "(0: only days that have begun; more is for simulations and tests).",
    )
    data_dir: str = Field(default=".poolfin", description="Where `poolfin up` keeps its state.")
    keys_dir: str | None = Field(
        default=None,
        description="Where the CLI finds the local keys it signs with (poolfin/keys.py); "
        "default: the running stack's, else <data_dir>/keys.",
    )
    trust_file: str | None = Field(
        default=None,
        description="The registry's genesis: parties' public keys (at least the operators'), "
        "JSON; re-read when it changes. Required to run a service (`poolfin up` provisions one).",
    )
    service_keys_file: str | None = Field(
        default=None,
        description="The services' secrets: MAC keys and the platform's signing keys, JSON "
        "(mode 0600). Required to run a service (`poolfin up` provisions one).",
    )
    token_max_ttl_s: int = Field(
        default=3600,
        ge=60,
        description="Longest lifetime (exp − iat) of a bearer token credit's HTTP front accepts.",
    )
    message_max_age_s: int = Field(
        default=86400,
        ge=1,
        description="A signed external message whose occurred_at is older than this when it is "
        "verified is dead-lettered as `stale`.",
    )
    message_max_skew_s: int = Field(
        default=300,
        ge=0,
        description="How far in the future a signed message's occurred_at may lie (clock skew).",
    )
