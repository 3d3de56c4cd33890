"""One Settings object, read from the environment (prefix ATLILITH_, plus DATABASE_URL)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATLILITH_", extra="ignore", frozen=True)

    env: Literal["dev", "test", "production"] = "dev"

    # --- database -------------------------------------------------------------------------
    # The admin/owner URL: migrations run with it. Unset = embedded PostgreSQL in data_dir.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "ATLILITH_DATABASE_URL")
    )
    # The URL the app itself uses; derived from database_url with the app role when unset.
    app_database_url: str | None = None
    app_db_password: str | None = None
    db_owner_role: str = "atlilith_owner"
    db_app_role: str = "atlilith_app"
    # System and service work (the relay, handlers, sign-up, admin, sweeps) connects as this
    # role, from its own pool: the only role whose 'system'/'service' context the row-level
    # policies honour, so SQL on the request path's connections cannot claim either.
    db_system_role: str = "atlilith_system"
    system_database_url: str | None = None
    system_db_password: str | None = None
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_system_pool_size: int = Field(default=5, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    data_dir: Path = Path(".atlilith")
    # Where running dev servers leave a pointer to their data dir (default <tmp>/atlilith-<uid>).
    runtime_dir: Path | None = None

    # --- http -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=3040, ge=1, le=65535)
    public_url: str | None = None  # e.g. https://api.atlilith.com; default http://host:port
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Benchmarks need a statement count per request; off unless asked for.
    expose_db_stats: bool = False

    # --- auth -----------------------------------------------------------------------------
    jwt_secret: str | None = None  # dev generates one and keeps it in data_dir
    jwt_audience: str = "atlilith"
    jwt_issuer: str = "atlilith"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=60)
    password_hash_profile: Literal["default", "cheapest"] = "default"  # noqa: S105
    login_max_failures: int = Field(default=10, ge=1)
    login_lockout_seconds: int = Field(default=900, ge=1)

    # --- oauth (MCP hosts signing in through the portal; docs/oauth.md) ---------------------
    oauth_access_token_ttl_seconds: int = Field(default=3600, ge=30, le=86_400)
    oauth_refresh_token_ttl_seconds: int = Field(default=90 * 86_400, ge=60)
    # How long a person has to sign in and consent, and a client to redeem its code.
    oauth_request_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    oauth_code_ttl_seconds: int = Field(default=120, ge=10, le=600)
    # Client ID metadata documents: fetch limits, and how long a fetched one is trusted.
    oauth_client_document_max_bytes: int = Field(default=5120, ge=512, le=65_536)
    oauth_client_document_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    oauth_client_document_cache_seconds: int = Field(default=3600, ge=0, le=86_400)

    # --- rate limits (core.ratelimit) -----------------------------------------------------
    rate_limit_enabled: bool = True
    # A `limits` storage URI: per process in memory, or shared (async+redis://host:6379).
    rate_limit_storage: str = "async+memory://"
    rate_limit_per_credential: str = "600/minute"
    rate_limit_per_ip: str = "1200/minute"
    rate_limit_signin_per_ip: str = "20/minute"
    # Posts to the public pages' forms per client address, in a bucket apart from signing in.
    rate_limit_public_per_ip: str = "20/minute"
    # Bookings made on one public booking page, whoever makes them (servers.public).
    rate_limit_public_per_target: str = "30/hour"
    # "module:function" of an async check (form fields, client address) -> bool run on every
    # public form post, e.g. a Turnstile verification; unset = no challenge.
    public_challenge: str | None = None
    # Peers (addresses or CIDRs) whose X-Forwarded-For is believed; none by default.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator(
        "rate_limit_per_credential",
        "rate_limit_per_ip",
        "rate_limit_signin_per_ip",
        "rate_limit_public_per_ip",
        "rate_limit_public_per_target",
    )
    @classmethod
    def _one_rate(cls, value: str) -> str:
        from limits import parse

        parse(value)  # "600/minute", "10 per 1 minute"; a typo fails at start, not per request
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _async_storage(cls, value: str) -> str:
        if not value.startswith("async+"):
            raise ValueError(
                "use an async `limits` storage URI, e.g. async+memory:// or async+redis://host:6379"
            )
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # --- mcp ------------------------------------------------------------------------------
    token: str | None = None  # identity for `atlilith mcp` over stdio
    toolsets: Annotated[list[str] | None, NoDecode] = None  # None = every default toolset
    read_only: bool = False
    # Handshake-era (2025-11-25) HTTP clients: "stateless" answers each POST on its own (any
    # process can serve any request; no notifications reach them); "stateful" keeps a session
    # per client in the process that opened it (a GET stream carries tools/list_changed; needs
    # sticky routing across processes). 2026-07-28 clients are stateless either way.
    mcp_http_sessions: Literal["stateless", "stateful"] = "stateful"
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    )
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    )

    # --- events ---------------------------------------------------------------------------
    relay_enabled: bool = True
    relay_batch_size: int = Field(default=100, ge=1, le=1000)
    # How many due deliveries a relay worker claims at once; first attempts of a handler with a
    # batch form then run in one transaction, one commit for all (1: one delivery at a time).
    relay_delivery_batch_size: int = Field(default=16, ge=1, le=1000)
    relay_poll_seconds: float = Field(default=5.0, gt=0)
    handler_max_attempts: int = Field(default=8, ge=1, le=100)
    handler_backoff_base_seconds: float = Field(default=1.0, gt=0)
    handler_backoff_max_seconds: float = Field(default=600.0, gt=0)
    # A claimed delivery (or outbox batch being published) belongs to its process until this
    # lease runs out; a live process renews it while the handler runs, a frozen one cannot.
    handler_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Extra modules whose @subscribe/@schedule handlers the relay loads (comma-separated).
    handler_modules: str = ""
    # Backstops for a client that vanished mid-transaction: the server ends an idle transaction
    # (and its row locks) after this, and probes silent TCP peers (0 = the server's default).
    db_idle_in_transaction_timeout_seconds: int = Field(default=120, ge=0)
    db_tcp_keepalives_idle_seconds: int = Field(default=30, ge=0)
    db_tcp_keepalives_interval_seconds: int = Field(default=10, ge=0)
    db_tcp_keepalives_count: int = Field(default=3, ge=0)
    outbox_retention_days: int = Field(default=7, ge=1)
    # The live event stream (GET /v1/events/stream): how often it looks for new events, and
    # how long one connection lasts before the client reconnects (re-authenticated) with its cursor.
    events_stream_poll_seconds: float = Field(default=1.0, gt=0, le=30)
    events_stream_seconds: float = Field(default=60.0, gt=0, le=3600)
    inngest_app_id: str = Field(default="atlilith", validation_alias=AliasChoices("INNGEST_APP_ID"))
    inngest_event_key: str | None = Field(default=None, validation_alias=AliasChoices("INNGEST_EVENT_KEY"))
    inngest_signing_key: str | None = Field(
        default=None, validation_alias=AliasChoices("INNGEST_SIGNING_KEY")
    )
    inngest_base_url: str | None = Field(default=None, validation_alias=AliasChoices("INNGEST_BASE_URL"))
    inngest_event_api_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("INNGEST_EVENT_API_BASE_URL")
    )
    inngest_dev: bool = Field(default=False, validation_alias=AliasChoices("INNGEST_DEV"))

    # --- observability (docs/observability.md) ----------------------------------------------
    # "host:port" to serve /metrics on a separate listener (no credential: bind it where only
    # Prometheus reaches); unset = /metrics on the main port, for platform admins' credentials.
    metrics_address: str | None = None
    # The database gauges (outbox lag, dead letters, jobs, credits) are re-read at most this often.
    metrics_cache_seconds: float = Field(default=5.0, ge=0.5, le=300)
    # /health/ready: the database must answer within this, and the relay's lag (the oldest
    # undelivered outbox event) stay under the bound (0 = not checked).
    health_ready_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    health_max_relay_lag_seconds: float = Field(default=300.0, ge=0)

    @field_validator("metrics_address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("use host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464")
        return value.strip()

    # --- misc -----------------------------------------------------------------------------
    log_format: Literal["auto", "json", "pretty"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    seed_password: str | None = None
    # Credits the seeded person and org start with (once), so `atlilith jobs run` works at once.
    seed_credits: int = Field(default=1000, ge=0, le=1_000_000_000)
    default_phone_region: str = "US"

    # --- messaging ------------------------------------------------------------------------
    # Channels a thread may use; `portal` needs no peer, the others deliver through one.
    messaging_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["portal", "email", "sms", "imessage"]
    )
    # Platform delivery peers: JSON {"email": "https://mail-sync/deliver", ...}.
    messaging_channel_peers: dict[str, str] = Field(default_factory=dict)
    messaging_draft_peer_url: str | None = None
    # host[:port] patterns (fnmatch) a context may name in its own peer URLs; empty = none may.
    messaging_peer_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Standard Webhooks key(s) signing requests to peers, newest first, comma-separated (every
    # one signs, so a peer keeps verifying during a rotation); the caller's token never goes there.
    messaging_peer_secret: str | None = None
    messaging_peer_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    messaging_peer_retries: int = Field(default=2, ge=0, le=10)
    messaging_prompt_budget_chars: int = Field(default=12_000, ge=500, le=500_000)

    @field_validator("messaging_channels", "messaging_peer_allowed_hosts", mode="before")
    @classmethod
    def _split_messaging_lists(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    # --- bookings -------------------------------------------------------------------------
    bookings_hold_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    bookings_reminder_lead_minutes: int = Field(default=1440, ge=1, le=43_200)
    # Manage links stay valid until the booking ends plus this grace (a late "what was it?").
    bookings_manage_link_grace_hours: int = Field(default=24, ge=0, le=24 * 90)
    # --- operations -----------------------------------------------------------------------
    backup_dir: Path = Path("backups")  # where `atlilith backup` writes and `restore` looks
    pg_bin_dir: Path | None = None  # pg_dump/pg_restore to prefer (default: found by version)
    # A publish to Inngest that takes longer fails and is retried with backoff (events stay in the outbox).
    relay_publish_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # --- analytics ------------------------------------------------------------------------
    # Ingest of up to 10,000 events per request needs more than the default body limit.
    analytics_max_body_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    analytics_max_batch: int = Field(default=10_000, ge=1, le=100_000)
    analytics_max_properties_bytes: int = Field(default=8192, ge=256, le=1_048_576)
    # Bounded skew: client clocks may run a little ahead; history may be backfilled this far.
    analytics_max_future_seconds: int = Field(default=300, ge=0, le=86_400)
    analytics_backfill_days: int = Field(default=365, ge=1, le=3650)
    analytics_partitions_ahead_months: int = Field(default=3, ge=1, le=24)
    analytics_query_timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @field_validator("toolsets", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return value

    @field_validator("mcp_allowed_hosts", "mcp_allowed_origins", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            ipaddress.ip_network(item, strict=False)  # an address or a CIDR, else refuse to start
        return value

    @property
    def inngest_enabled(self) -> bool:
        """Events go to Inngest when it is configured; otherwise handlers run in-process."""
        return bool(self.inngest_event_key or self.inngest_event_api_base_url or self.inngest_dev)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def url_for_clients(self, request_origin: str) -> str:
        """The base URL to tell a client to use: the one the MCP resource metadata states (and
        OAuth tokens are bound to) — the configured public URL, else http://HOST:PORT. Behind a
        proxy the request's own origin is the proxy's upstream, so it is never preferred; only
        a server bound to every interface (0.0.0.0, ::), which no client can dial, falls back
        to the origin the client reached."""
        if self.public_url or not _unspecified(self.host):
            return self.base_url
        return request_origin.rstrip("/")

    @property
    def mcp_resource_url(self) -> str:
        """The MCP endpoint as an OAuth protected resource (RFC 8707/9728): OAuth access tokens
        are minted for it and accepted only there."""
        return f"{self.base_url}/mcp"

    def resolved_jwt_secret(self) -> str:
        """The signing secret: configured, or generated once and kept (0600) in the data dir."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.env == "production":
            raise RuntimeError("ATLILITH_JWT_SECRET must be set in production")
        return generated_secret(self.data_dir.resolve() / "jwt-secret")

    # --- billing ------------------------------------------------------------------------------
    # The payment provider's Standard Webhooks key(s), comma-separated (any one verifies, for a
    # rotation's overlap); unset = the purchase webhook refuses.
    billing_webhook_secret: str | None = None
    # Signed webhooks and peer callbacks older (or newer) than this are refused as replays; the
    # Standard Webhooks library allows five minutes at most.
    billing_signature_tolerance_seconds: int = Field(default=300, ge=10, le=300)
    # After a peer's key is rotated, its older keys keep working this long (0 = stop at once).
    peer_secret_grace_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    # Default low-balance threshold of a context (each context may set its own).
    billing_low_balance_threshold: int = Field(default=10, ge=0)
    # Credits every new person and every new org start with (a grant, once); 0 = none.
    billing_starting_credits: int = Field(default=0, ge=0, le=1_000_000_000)
    # A queued job not started within this fails (its hold released).
    job_queue_timeout_seconds: int = Field(default=3600, ge=1)
    # A built-in action's run time; under the relay's 60 s handler limit.
    job_run_timeout_seconds: float = Field(default=45.0, gt=0, le=55)
    # How long a peer may take to call back, unless the peer is registered with its own.
    peer_timeout_seconds: int = Field(default=300, ge=1, le=86_400)
    peer_request_timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    peer_max_attempts: int = Field(default=3, ge=1, le=5)

    # --- identity -----------------------------------------------------------------------------
    identity_secret: str | None = None  # keys polyseme ids; dev generates one in data_dir

    def resolved_identity_secret(self) -> str:
        """The key of polyseme ids: configured, or generated once and kept (0600) in the data dir.
        Changing it changes every id, so production must set it explicitly."""
        if self.identity_secret:
            return self.identity_secret
        if self.env == "production":
            raise RuntimeError("ATLILITH_IDENTITY_SECRET must be set in production")
        return generated_secret(self.data_dir.resolve() / "identity-secret")


def generated_secret(path: Path) -> str:
    """The secret kept in `path`, created there first if absent. Several processes may start
    together on a fresh data dir: each writes a candidate to its own temporary file and links
    it into place, which succeeds for exactly one of them, so every process reads the one
    winning secret and none ever sees a half-written file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mode 0600
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secrets.token_urlsafe(48))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.link(tmp, path)
        finally:
            tmp.unlink()
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        # Only a crash of a version before atomic creation leaves this; refuse, never sign with "".
        raise RuntimeError(f"{path} is empty: delete it (a new secret is generated) or set the secret")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False  # a host name
