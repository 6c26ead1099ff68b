"""The registry's one settings object.

Every process (worker, CLI, API, tests, benchmarks) reads its configuration here and only here,
from environment variables with working local defaults. Unsafe combinations are refused at
construction time rather than discovered in production: outside ``local`` mode a
pseudonymisation key must be configured, and the lender publisher can only be built with
``acks=all`` plus idempotence.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import RegistryError
from schemas.topics import TopicNames

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Only ever used in ``local`` mode; a production worker refuses to start without its own key.
LOCAL_DEV_PSEUDONYM_KEY = "local-development-key-not-for-production"


#: The institution and token of local mode when ``API_TOKENS`` is empty (all scopes).
LOCAL_DEV_INSTITUTION, LOCAL_DEV_TOKEN = "local", "local-dev-token"


class SettingsError(RegistryError, ValueError):
    """A configuration that the registry refuses to run with."""

    retriable = False


class Scope(StrEnum):
    """What a risk-API token may do; each route requires exactly one scope."""

    FREQUENCY = "frequency"  #: POST /api/v1/frequency
    ERASURE = "erasure"  #: POST /api/v1/erasure
    SUBJECT_REPORT = "subject_report"  #: POST /api/v1/subject-report, the report page


#: Scopes of a token configured without a scope list: the one it always had a use for.
DEFAULT_SCOPES: frozenset[Scope] = frozenset({Scope.FREQUENCY})


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """One configured bearer token: whose it is and what it may do."""

    institution: str
    scopes: frozenset[Scope]


def parse_api_tokens(raw: str) -> dict[str, TokenGrant]:
    """Parse ``API_TOKENS``: comma-separated ``institution:token[:scope+scope...]``.

    Guarantees: a token without a scope list gets :data:`DEFAULT_SCOPES` (``frequency`` only,
    so a configuration written before scopes existed loses the erasure right it should never
    have had, and keeps everything else). Anything doubtful is refused with
    :class:`SettingsError` rather than guessed: an unknown scope name, an empty institution,
    token or scope list, a token configured twice, or a token holding ``:`` (it would read as
    a scope list). Whitespace around each part is ignored; empty items are skipped.
    """
    grants: dict[str, TokenGrant] = {}
    for number, item in enumerate(raw.split(","), start=1):
        if not item.strip():
            continue
        parts = [part.strip() for part in item.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise SettingsError(
                f"API_TOKENS item {number}: expected institution:token[:scope+scope], with no "
                "empty part and no ':' inside a token")
        institution, token = parts[0], parts[1]
        scopes = DEFAULT_SCOPES
        if len(parts) == 3:
            names = [name.strip() for name in parts[2].split("+")]
            known = {scope.value for scope in Scope}
            unknown = sorted(n for n in names if n and n not in known)
            if unknown or not all(names):
                raise SettingsError(
                    f"API_TOKENS item {number} ({institution}): unknown scope "
                    f"{', '.join(unknown) or '(empty)'}; known: "
                    f"{', '.join(s.value for s in Scope)}")
            scopes = frozenset(Scope(name) for name in names)
        if token in grants:
            raise SettingsError(f"API_TOKENS item {number} ({institution}): token configured "
                                "twice")
        grants[token] = TokenGrant(institution, scopes)
    return grants


def api_grants(raw: str, mode: str) -> dict[str, TokenGrant]:
    """The grants of ``API_TOKENS`` = ``raw`` in ``REGISTRY_MODE`` = ``mode``: empty in local
    mode is the local dev token with every scope; otherwise :func:`parse_api_tokens`."""
    if not raw.strip() and mode == "local":
        return {LOCAL_DEV_TOKEN: TokenGrant(LOCAL_DEV_INSTITUTION, frozenset(Scope))}
    return parse_api_tokens(raw)


def _env_value(value: object) -> str | None:
    """``value`` written as the environment variable it was read from (None: unset)."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FaultSwitches(BaseSettings):
    """TEST ONLY switches, one place for all of them: the fault and kill tests turn them on
    through the environment of the worker they start. :class:`Settings` refuses any of them
    outside local mode. Variables: ``FAULT_<FIELD>`` (``TEST_DISABLE_DEDUP`` for the one
    negative control)."""

    model_config = SettingsConfigDict(env_prefix="FAULT_", case_sensitive=False,
                                      extra="ignore", populate_by_name=True)

    kill_after_insert_cycles: int = Field(
        0, ge=0, description="TEST ONLY: the worker SIGKILLs itself right after its N-th "
        "ClickHouse insert, before committing the offsets (0 = never).",
    )
    disable_dedup: bool = Field(
        False, validation_alias=AliasChoices("TEST_DISABLE_DEDUP", "disable_dedup"),
        description="TEST ONLY negative control: no de-duplication (admission marks "
        "and day-bucket event keys); results become wrong.",
    )
    clickhouse_down_after_s: float = Field(
        0, ge=0, description="TEST ONLY: ClickHouse inserts and commands fail (as if the "
        "server were down) from this many seconds after the worker opened ClickHouse ...",
    )
    clickhouse_down_for_s: float = Field(
        0, ge=0, description="TEST ONLY: ... for this many seconds (0 = never).",
    )
    sink_poison_event_id: str = Field(
        "", description="TEST ONLY: the sink gives the ledger row of this event id a borrower "
        "that ClickHouse refuses (not a pseudonym), so that row is dead-lettered (empty = never).",
    )
    kill_during_erasure: bool = Field(
        False, description="TEST ONLY: the worker SIGKILLs itself in the middle of an erasure "
        "(after deleting from the first table).",
    )

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable of ``field``."""
        return "TEST_DISABLE_DEDUP" if field == "disable_dedup" else f"FAULT_{field.upper()}"

    def any_set(self) -> bool:
        return any(getattr(self, name) != info.default
                   for name, info in type(self).model_fields.items())


class Settings(BaseSettings):
    """Typed configuration; field ``foo_bar`` is read from the variable ``FOO_BAR``."""

    # hide_input_in_errors: a refused configuration must not print API_TOKENS or keys back.
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      hide_input_in_errors=True)

    registry_mode: Literal["local", "production"] = Field(
        "local", description="`local` allows the built-in development key and tokens."
    )
    registry_data_dir: Path = Field(
        REPO_ROOT / ".registry-data",
        description="Local state: Kafka log dirs, Redis dump, embedded ClickHouse folder.",
    )

    # --- services -------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_namespace: str = Field(
        "", description="Prefix of every topic name (isolates deployments sharing a broker)."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Security protocol of the registry's own clients."
    )
    kafka_sasl_username: str = Field("", description="SCRAM user of this process, if SASL.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SCRAM password.")
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA(s) that sign the brokers' certificates (SSL, "
        "SASL_SSL). Required in production mode; local mode falls back to the system store.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain) for mutual TLS; needs the key file.",
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key file; never logged.",
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to. "
        "May only be switched off in local mode.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for consent and dedup.")
    clickhouse_url: str = Field(
        "",
        description="Empty: embedded ClickHouse (chDB) in `<data dir>/clickhouse`; "
        "`http://user:pass@host:8123` selects a ClickHouse server.",
    )
    clickhouse_database: str = Field("registry", description="ClickHouse database name.")
    clickhouse_cluster: str = Field(
        "", description="Name of a ClickHouse cluster (`remote_servers`): migrations then create "
        "replicated `<table>_local` tables ON CLUSTER plus Distributed tables sharded by "
        "borrower. Empty: one server or embedded.")
    kafka_replication_factor: int | None = Field(
        None, ge=1, description="Replication factor of every topic the registry and its Faust "
        "app create (changelogs included); unset = min(3, brokers). 1 is refused on a cluster "
        "of 2 or more brokers. From 3, topics get `min.insync.replicas=2`.",
    )
    lender_topic_retention_hours: int = Field(
        168, ge=1, description="Retention of lender loans/consent topics (they hold raw "
        "national ids) and rejected topics, set when the registry creates them.",
    )
    registry_topic_retention_hours: int = Field(
        168, ge=1, description="Retention of the registry's internal topics (`registry.*`, "
        "pseudonyms only; deleted, never compacted), set when the registry creates them.",
    )

    # --- privacy --------------------------------------------------------------------------
    pseudonym_key: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key that turns national ids into pseudonyms. Required "
        "outside local mode; never logged.",
    )

    # --- stream processing ----------------------------------------------------------------
    registry_app_id: str = Field("credit-registry", description="Faust app id / group prefix.")
    registry_partitions: int = Field(6, ge=1, description="Partitions of registry topics.")
    registry_timezone: str = Field("Asia/Shanghai", description="Time zone of daily buckets.")
    grace_hours: int = Field(
        72, ge=1, description="Event-time lateness accepted by open daily buckets; older "
        "events take the correction path."
    )
    hourly_state_hours: int = Field(48, ge=1, description="Hourly buckets kept in stream state.")
    future_skew_seconds: int = Field(300, ge=0, description="Tolerated clock skew into the future.")
    max_amount: Decimal = Field(Decimal("10000000.00"), description="Largest accepted amount.")
    dedup_ttl_days: int = Field(
        90, ge=1, description="How long an event id is remembered, and how long (event "
        "time) a cancel waits for its event.")
    max_record_bytes: int = Field(16384, ge=256, description="Larger input records are rejected.")
    admission_batch: int = Field(
        2000, ge=1, description="Lender records per bulk read (and per consent round trip).")
    state_cache_borrowers: int = Field(
        100_000, ge=0, description="Decoded borrower states the stream agent keeps between "
        "batch records (0 = none); the table stays the source of truth.")

    # --- velocity alerts (topic registry.alerts; 0 switches a rule off) -----------------------
    alert_draws_24h: int = Field(
        5, ge=0, description="Alert `draws_24h` when a borrower has at least this many draws "
        "within 24 h of event time; 0 turns the rule off."
    )
    alert_lenders_7d: int = Field(
        3, ge=0, description="Alert `lenders_7d` when a borrower draws from at least this many "
        "distinct lenders within 7 days of event time; 0 turns the rule off."
    )

    # --- ClickHouse sink ------------------------------------------------------------------
    sink_batch_rows: int = Field(20000, ge=1, description="Rows per ClickHouse insert.")
    sink_batch_ms: int = Field(300, ge=1, description="Longest a row waits before an insert.")

    # --- lender publisher -----------------------------------------------------------------
    publisher_acks: Literal["all", "0", "1"] = Field("all", description="Must stay `all`.")
    publisher_idempotence: bool = Field(True, description="Must stay on.")
    publisher_linger_ms: int = Field(10, ge=0, description="Producer batching delay.")
    publisher_compression: Literal["none", "gzip", "lz4", "zstd"] = Field("lz4")
    publisher_max_in_flight: int = Field(
        20000, ge=1, description="Unacknowledged sends before the publisher waits."
    )

    # --- risk API and operations ------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Bind address of the risk API / dashboard.")
    api_port: int = Field(8080, description="Port of the risk API / dashboard.")
    api_tokens: SecretStr = Field(
        SecretStr(""),
        description="Bearer tokens per institution with their scopes, "
        "`inst-a:token1:frequency,counter:token2:subject_report+erasure`; a token without "
        "`:scopes` may only query `frequency`. Local mode uses `local:local-dev-token` with "
        "every scope when empty.",
    )
    erasure_wait_seconds: float = Field(
        30.0, ge=0, description="How long `POST /api/v1/erasure` waits for the erasure to reach "
        "ClickHouse before it answers 202 (pending) instead of 200.")
    lag_poll_seconds: float = Field(2.0, gt=0, description="Lag monitor sampling interval.")

    # --- command line and local stack -------------------------------------------------------
    registry_api_token: SecretStr | None = Field(
        None, description="Bearer token of `registry frequency`, `erase` and `report` when "
        "`--token` is not given; unset: the first configured token holding the command's "
        "scope. Never logged.",
    )
    simulator_rate: float = Field(
        200.0, ge=0, allow_inf_nan=False, description="Events/s of the lender simulator that "
        "`make run` starts (0 = unlimited).",
    )

    # --- test-only switches (refused outside local mode) ----------------------------------
    faults: FaultSwitches = Field(
        default_factory=lambda: FaultSwitches(),
        description="TEST ONLY: the fault switches (:class:`FaultSwitches`), each read from "
        "its own variable; refused outside local mode.",
    )

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.registry_mode != "local" and self.pseudonym_key is None:
            raise SettingsError("PSEUDONYM_KEY is required outside local mode")
        if self.publisher_acks != "all" or not self.publisher_idempotence:
            raise SettingsError(
                "the lender publisher requires acks=all with idempotence: anything weaker can "
                "lose or duplicate loan events"
            )
        if self.registry_mode != "local" and self.faults.any_set():
            raise SettingsError("test-only switches are refused outside local mode")
        self._refuse_unsafe_tls()
        if self.hourly_state_hours > self.grace_hours:
            raise SettingsError("HOURLY_STATE_HOURS may not exceed GRACE_HOURS")
        ZoneInfo(self.registry_timezone)  # raises on an unknown zone
        parse_api_tokens(self.api_tokens.get_secret_value())  # raises on a bad token list
        return self

    def _refuse_unsafe_tls(self) -> None:
        files = {"KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
                 "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                 "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        if not self.kafka_tls:
            given = [name for name, path in files.items() if path is not None]
            if self.kafka_ssl_key_password is not None:
                given.append("KAFKA_SSL_KEY_PASSWORD")
            if given:
                # TLS files with a clear-text protocol: the operator expects encryption that
                # would silently not happen.
                raise SettingsError(
                    f"{', '.join(given)} set but "
                    f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} does not use TLS "
                    "(use SSL or SASL_SSL)")
            return
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise SettingsError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_keyfile is None:
            raise SettingsError("KAFKA_SSL_KEY_PASSWORD without KAFKA_SSL_KEYFILE")
        if self.registry_mode != "local":
            if self.kafka_ssl_cafile is None:
                raise SettingsError(
                    "KAFKA_SSL_CAFILE is required with TLS outside local mode: the registry "
                    "trusts the CA it is given, not every CA of the system store")
            if not self.kafka_ssl_check_hostname:
                raise SettingsError("KAFKA_SSL_CHECK_HOSTNAME=false is refused outside local mode")
        if self.kafka_security_protocol == "SSL" and self.kafka_sasl_username:
            raise SettingsError("KAFKA_SASL_USERNAME set with KAFKA_SECURITY_PROTOCOL=SSL: the "
                                "identity is the client certificate; use SASL_SSL for SCRAM")
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise SettingsError(f"{name}: no such file {path}")
        try:
            self.kafka_ssl_context()  # unreadable PEM, key not matching, wrong password
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(f"the Kafka TLS files cannot be used: {exc}") from exc

    # --- derived values -------------------------------------------------------------------
    @property
    def kafka_tls(self) -> bool:
        """Whether the registry's Kafka connections are encrypted (SSL or SASL_SSL)."""
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def pseudonym_key_bytes(self) -> bytes:
        key = LOCAL_DEV_PSEUDONYM_KEY
        if self.pseudonym_key is not None:
            key = self.pseudonym_key.get_secret_value()
        return key.encode()

    @property
    def redis_prefix(self) -> str:
        """Prefix of every Redis key of this deployment (isolates tests sharing a server)."""
        return f"{self.kafka_namespace}{self.registry_app_id}:"

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.kafka_namespace)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.registry_timezone)

    @property
    def grace(self) -> timedelta:
        return timedelta(hours=self.grace_hours)

    @property
    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{self.registry_data_dir / 'clickhouse'}"

    @property
    def clickhouse_embedded(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")

    @property
    def api_grants(self) -> dict[str, TokenGrant]:
        """Token -> :class:`TokenGrant`. Empty outside local mode means every request gets 401;
        empty in local mode means the local dev token with every scope."""
        return api_grants(self.api_tokens.get_secret_value(), self.registry_mode)

    @property
    def institution_tokens(self) -> dict[str, str]:
        """Token -> institution, whatever the token's scopes (see :attr:`api_grants`)."""
        return {token: grant.institution for token, grant in self.api_grants.items()}

    def token_with_scope(self, scope: Scope) -> str | None:
        """The first configured token holding ``scope`` (CLI default), or None."""
        return next((t for t, g in self.api_grants.items() if scope in g.scopes), None)

    def cli_token(self, scope: Scope) -> str | None:
        """The token a CLI command sends without ``--token``: ``REGISTRY_API_TOKEN`` when set
        (and not empty), else :meth:`token_with_scope` of the command's ``scope``."""
        if self.registry_api_token is not None and self.registry_api_token.get_secret_value():
            return self.registry_api_token.get_secret_value()
        return self.token_with_scope(scope)

    def to_env(self) -> dict[str, str]:
        """The environment that makes another process (a worker, a CLI) build exactly these
        settings: every field as the variable it is read from, the fault switches only when
        set. Fields that are unset (None) are left out; :meth:`env_names` lists every name so
        that a caller can drop inherited values first."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            if name == "faults":
                continue
            value = _env_value(getattr(self, name))
            if value is not None:
                env[name.upper()] = value
        for name, info in FaultSwitches.model_fields.items():
            value = getattr(self.faults, name)
            if value != info.default:
                env[FaultSwitches.env_name(name)] = str(_env_value(value))
        return env

    def child_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a child process (a worker, a CLI, an ``infra/`` script): this
        process's own without any variable the settings read, plus these settings
        (:meth:`to_env`) and ``extra`` (e.g. the infra scripts' own variables). The one
        place besides the settings' own reading that touches the environment."""
        names = self.env_names()
        env = {k: v for k, v in os.environ.items() if k.upper() not in names}
        env.update(self.to_env())
        env.update(extra or {})
        return env

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable the settings read (fault switches included)."""
        return ({name.upper() for name in cls.model_fields if name != "faults"}
                | {FaultSwitches.env_name(name) for name in FaultSwitches.model_fields})

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """A fresh TLS client context for Kafka, or None without TLS.

        Guarantees: the broker's certificate chain is always verified (against
        ``KAFKA_SSL_CAFILE``, or the system store in local mode when none is given), its name
        is checked against the host connected to unless ``KAFKA_SSL_CHECK_HOSTNAME=false``
        (local mode only), nothing older than TLS 1.2 is spoken, and the client certificate is
        presented when one is configured. Built anew on each call, so a client created after a
        certificate rotation reads the new files.
        """
        if not self.kafka_tls:
            return None
        cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile is not None else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.kafka_ssl_check_hostname
        context.verify_mode = ssl.CERT_REQUIRED
        if self.kafka_ssl_certfile is not None:
            password = (self.kafka_ssl_key_password.get_secret_value()
                        if self.kafka_ssl_key_password is not None else None)
            context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile, password)
        return context

    def kafka_client_options(self) -> dict[str, object]:
        """Connection options shared by every aiokafka client of this process: bootstrap,
        protocol, SCRAM-SHA-512 credentials with SASL, and an ``ssl_context`` with TLS (see
        :meth:`kafka_ssl_context`). The one place a client's security is decided."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            options |= {
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": self.kafka_sasl_password.get_secret_value(),
            }
        if self.kafka_tls:
            options["ssl_context"] = self.kafka_ssl_context()
        return options

    def faust_broker_credentials(self) -> CredentialsT | None:
        """The Faust app's ``broker_credentials``, equivalent to :meth:`kafka_client_options`:
        None for PLAINTEXT, SCRAM-SHA-512 ``SASLCredentials`` (with the TLS context for
        SASL_SSL, without which Faust would silently fall back to SASL_PLAINTEXT), or
        ``SSLCredentials`` for SSL (mutual TLS when a client certificate is configured)."""
        import faust  # the publisher and CLI import settings without loading Faust

        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        context = self.kafka_ssl_context()
        if self.kafka_security_protocol == "SSL":
            return faust.SSLCredentials(context)
        # With a context Faust's SASLCredentials says SASL_SSL, without one SASL_PLAINTEXT.
        return faust.SASLCredentials(
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value(),
            ssl_context=context, mechanism="SCRAM-SHA-512",
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
