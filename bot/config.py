"""Configuration: one YAML file (MESHBOT_CONFIG) plus environment variables, validated."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from checks.cluster import DEFAULT_CONCURRENCY
from checks.model import Settings as CheckSettings
from checks.suppression import Suppression

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigurationError(Exception):
    """Bad configuration: the message is one line a person can act on."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


CODE = r"^(IST|MB)\d{4}$"
OBJECT = r"^[A-Z][A-Za-z]+ ([a-z0-9][a-z0-9.-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*$"  # "Kind [namespace/]name"


class SuppressionConfig(_Strict):
    """A configuration finding not to report as a problem on this cluster (it still shows, as `skip`)."""

    code: str = Field(pattern=CODE)
    object: str = Field(pattern=OBJECT)
    until: datetime | None = None  # none: for good
    reason: str = Field(min_length=1)

    def suppression(self) -> Suppression:
        until = self.until.replace(tzinfo=self.until.tzinfo or UTC).timestamp() if self.until else None
        return Suppression(self.code, self.object, "config", self.reason, until)


class ClusterConfig(_Strict):
    kubeconfig: str | None = None  # none: in-cluster, then ~/.kube/config
    context: str | None = None
    istio_namespace: str = "istio-system"
    # Direct URLs for in-mesh endpoints, keyed "service:port" or "namespace/service:port".
    endpoints: dict[str, str] = Field(default_factory=dict)
    # Who may run checks here; empty means everyone in every channel.
    allowed_channels: list[str] = Field(default_factory=list)
    allowed_users: list[str] = Field(default_factory=list)
    # Configuration findings reported as `skip` here (more can be added from Slack: bot.suppressions).
    suppressions: list[SuppressionConfig] = Field(default_factory=list)


class ChecksConfig(_Strict):
    budget_seconds: float = Field(20.0, gt=0)
    request_timeout_seconds: float = Field(5.0, gt=0)
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=256)
    clock_skew_seconds: float = Field(30.0, gt=0)
    refresh_delay_seconds: float = Field(10.0, gt=0)
    hot_sidecar_millicores: float = Field(100.0, gt=0)

    @model_validator(mode="after")
    def _budget_covers_a_request(self) -> ChecksConfig:
        if self.budget_seconds < self.request_timeout_seconds:
            raise ValueError("budget_seconds must be at least request_timeout_seconds")
        return self

    def settings(self) -> CheckSettings:
        return CheckSettings(self.clock_skew_seconds, self.refresh_delay_seconds, self.hot_sidecar_millicores)


class IncidentConfig(_Strict):
    channels: list[str] = Field(default_factory=list)
    channel_prefix: str | None = None
    min_score: float = Field(0.5, ge=0, le=1)


class DigestConfig(_Strict):
    """A scheduled digest: ``cron`` is a standard crontab line (0 or 7 is Sunday), read in ``timezone``."""

    channel: str  # a channel id (C…) is best: a name works for posting, not for `/mesh digest list` matching
    cron: str
    timezone: str = "UTC"
    clusters: list[str] = Field(default_factory=list)  # empty: every cluster
    checks: list[str] = Field(default_factory=lambda: ["all"])
    quiet: bool = False  # post only when something changed since the channel's previous digest
    id: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")  # default: derived from the fields above

    @model_validator(mode="after")
    def _cron_is_valid(self) -> DigestConfig:
        from bot.schedules import BadCron, trigger

        try:
            trigger(self.cron, self.timezone)
        except BadCron as exc:
            raise ValueError(str(exc)) from None
        return self


class Config(_Strict):
    clusters: dict[str, ClusterConfig] = Field(default_factory=dict)
    default_cluster: str | None = None
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    guides: list[str] = Field(default_factory=list)
    incident: IncidentConfig = Field(default_factory=IncidentConfig)
    digests: list[DigestConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_is_known(self) -> Config:
        if self.default_cluster and self.default_cluster not in self.clusters:
            raise ValueError(f"default_cluster '{self.default_cluster}' is not one of clusters")
        for digest in self.digests:
            unknown = sorted(set(digest.clusters) - set(self.clusters))
            if unknown:
                raise ValueError(f"digest for {digest.channel} names unknown clusters: {', '.join(unknown)}")
        return self

    def cluster(self, name: str | None) -> tuple[str, ClusterConfig]:
        name = name or self.default_cluster or (next(iter(self.clusters)) if len(self.clusters) == 1 else None)
        if name is None:
            raise ConfigurationError("no cluster named and no default_cluster configured")
        if name not in self.clusters:
            known = ", ".join(sorted(self.clusters)) or "none configured"
            raise ConfigurationError(f"unknown cluster '{name}' (known: {known})")
        return name, self.clusters[name]


class Secrets(BaseModel):
    """Slack credentials and service URLs, from the environment only."""

    model_config = ConfigDict(frozen=True)
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = None
    redis_url: str = DEFAULT_REDIS_URL

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Secrets:
        env = dict(os.environ if env is None else env)

        def secret(name: str) -> SecretStr | None:
            return SecretStr(env[name]) if env.get(name) else None

        return cls(
            slack_bot_token=secret("SLACK_BOT_TOKEN"),
            slack_signing_secret=secret("SLACK_SIGNING_SECRET"),
            slack_app_token=secret("SLACK_APP_TOKEN"),
            slack_api_url=env.get("SLACK_API_URL") or None,
            redis_url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
        )


def load_config(path: str | os.PathLike | None = None) -> Config:
    """The file named by ``path`` or MESHBOT_CONFIG; no file at all means an empty configuration."""
    path = path or os.environ.get("MESHBOT_CONFIG")
    if not path:
        return Config()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise ConfigurationError(f"config {path}: {where}: {first['msg']}") from None
