"""Typed server settings: CLI flags > BATCHWISE_* environment > TOML config file > defaults.

Every field is reachable three ways, e.g. the batch timeout:
  CLI   --batching.batch-timeout-ms 2
  env   BATCHWISE_BATCHING__BATCH_TIMEOUT_MS=2
  file  [batching] batch_timeout_ms = 2      (file named by --config-file / BATCHWISE_CONFIG_FILE)
An unknown key, at any level and from any source, is refused with the nearest valid one
(service/settings_keys.py). Settings are built once in `load_settings` and passed down through
constructors; nothing else in the service reads os.environ.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    CliSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contract.layout import KNOWN_VARIANTS
from service.settings_keys import check_cli, check_env, check_file, check_keys

VariantName = Literal[KNOWN_VARIANTS]  # type: ignore[valid-type]  # savedmodel, float32, ... (the contract's list)
Variant = Literal[("auto", *KNOWN_VARIANTS)]  # type: ignore[valid-type]
DEFAULT_FALLBACK_ORDER: tuple[str, ...] = ("int8", "dynamic", "float16", "float32", "savedmodel")
EventLoop = Literal["auto", "asyncio", "uvloop"]
MIB = 1024 * 1024
WORKER_CONNECTION_AGE_S = 30.0  # default connection age with several workers: re-spreads long-lived clients
DEFAULT_LATENCY_BUCKETS_S = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032,
    0.064, 0.128, 0.256, 0.512, 1.0, 2.5, 5.0, 10.0, 30.0,
]


class ServerSettings(BaseModel):
    """The gRPC listener and its limits."""

    host: str = Field("127.0.0.1", description="gRPC bind address (0.0.0.0 in containers)")
    port: int = Field(8500, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    max_message_bytes: int = Field(64 * MIB, gt=0, description="largest request or response message")
    grace_period_s: float = Field(10.0, ge=0, description="time in-flight calls get to finish on shutdown")
    max_concurrent_rpcs: int = Field(
        2048, gt=0, description="RPCs in progress at once, health checks included; more get RESOURCE_EXHAUSTED"
    )
    max_rows_per_request: int = Field(65536, gt=0, description="rows (batch dimension) in one Predict")
    max_tensor_elements: int = Field(16 * MIB, gt=0, description="elements in one input tensor")
    enable_model_control: bool = Field(False, description="serve ModelService/HandleReloadConfigRequest")
    max_connection_age_s: float | None = Field(
        None, ge=0, description="close client connections after this age so clients rebalance (0 = never; "
        f"unset = never with one worker, {WORKER_CONNECTION_AGE_S:g} s with several)"
    )
    event_loop: EventLoop = Field(
        "auto", description="asyncio event loop: auto = uvloop if installed, else asyncio's own"
    )
    max_pending_rpcs: int = Field(
        512, ge=2, description="calls gRPC has received but not yet handed to us; past half of it new calls are "
        "cancelled at random, past it all are (CANCELLED): bounds the queue in front of the event loop"
    )
    health_port: int | None = Field(
        None, ge=0, le=65535, description="also serve grpc.health.v1 (only) in plaintext on this port, for "
        "Kubernetes' native gRPC probes when TLS/mTLS is on; none by default (0 picks a free one)"
    )
    workers: int | Literal["auto"] = Field(
        1, description="server processes behind the port (SO_REUSEPORT), each with its own models; "
        "auto = the CPU cores this process may use (affinity and cgroup quota)"
    )

    @model_validator(mode="after")
    def _health_port_is_its_own(self) -> ServerSettings:
        if self.health_port and self.health_port == self.port:
            raise ValueError(f"server.health_port {self.health_port} must differ from server.port")
        return self

    @field_validator("workers")
    @classmethod
    def _resolve_workers(cls, workers: int | str) -> int:
        if workers == "auto":
            from service.workers.cpus import available_cpus

            return available_cpus()
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1 or 'auto', not {workers}")
        return int(workers)

    @property
    def worker_count(self) -> int:
        """`workers` resolved to a number ("auto" is resolved when the settings are validated)."""
        return int(self.workers)

    @property
    def reuse_port(self) -> bool:
        """Whether every listener (gRPC, HTTP) must bind with SO_REUSEPORT: only with several workers.

        With one worker it stays off, so that a second server on the same port fails to bind loudly.
        """
        return self.worker_count > 1

    @property
    def connection_age_s(self) -> float:
        """max_connection_age_s as applied: unset means 0 (never) with one worker, WORKER_CONNECTION_AGE_S with more."""
        if self.max_connection_age_s is not None:
            return self.max_connection_age_s
        return WORKER_CONNECTION_AGE_S if self.reuse_port else 0.0


class HttpSettings(BaseModel):
    """The HTTP listener (TF Serving REST and v2 REST) and its request limits."""

    enabled: bool = Field(True, description="serve TF Serving's REST API and the v2 REST API")
    host: str = Field("127.0.0.1", description="HTTP bind address (0.0.0.0 in containers)")
    port: int = Field(8501, ge=0, le=65535, description="HTTP port; 0 picks a free one")
    max_body_bytes: int = Field(64 * MIB, gt=0, description="largest request body (checked before it is read)")
    max_json_depth: int = Field(40, ge=2, le=512, description="deepest nesting of JSON arrays and objects")
    max_json_elements: int = Field(
        16 * MIB, gt=0, description="JSON values in one request body (counted before it is parsed)"
    )
    request_timeout_ms: float = Field(
        30_000, ge=0, description="longest an API call may take from arrival to reply, then 504 "
        "(TF Serving's rest_api_timeout_in_ms); 0 = no limit"
    )


class RepositorySettings(BaseModel):
    """Where models live and how the server watches them."""

    path: Path = Field(Path("model_repository"), description="root of <model>/<version>/ folders")
    poll_interval_s: float = Field(2.0, ge=0, description="repository re-scan period; 0 scans only at start")
    load_parallelism: int = Field(1, ge=1, description="versions loaded at once in the background")


class RuntimeSettings(BaseModel):
    """Which artifact serves a model, and on which device."""

    variant: Variant = Field("auto", description="auto: SavedModel on GPU, best TFLite variant on CPU")
    fallback_order: list[VariantName] = Field(
        list(DEFAULT_FALLBACK_ORDER),
        description="variants tried in order when variant=auto on a CPU node",
    )
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="auto uses a GPU when one is visible")
    tflite_threads: int = Field(1, ge=1, description="threads per LiteRT interpreter")
    tf_intra_op_threads: int = Field(1, ge=0, description="TensorFlow threads within one op (0 = one per core)")
    tf_inter_op_threads: int = Field(1, ge=0, description="TensorFlow ops run at once (0 = one per core)")
    gpu_memory_limit_mib: int = Field(
        0, ge=0, description="GPU memory TensorFlow may take per process (0 = grow on demand); "
        "with several workers sharing a GPU, set it so their sum fits"
    )
    tflite_pool_size: int = Field(2, ge=1, description="LiteRT interpreters per model version")
    consistency_atol: float = Field(0.05, ge=0, description="max |diff| vs the model card's sample outputs")
    min_top1_agreement: float = Field(0.9, ge=0, le=1, description="classification agreement vs the card")


BatchingMode = Literal["adaptive", "slo", "fixed"]


class BatchingSettings(BaseModel):
    """Dynamic batching knobs (server-wide defaults; models may override).

    mode: adaptive (default) runs a request at once unless waiting is likely to pay, never longer
    than batch_timeout_ms; slo also picks its wait and batch-size cap to keep the p99 time in the
    server under latency_slo_ms, and refuses at once (UNAVAILABLE) what would miss it; fixed waits
    batch_timeout_ms / batch_idle_timeout_ms as TF Serving does.
    """

    enabled: bool = Field(True, description="merge concurrent requests into batches")
    mode: BatchingMode = Field("adaptive", description="adaptive | slo | fixed: how the batcher decides to wait")
    latency_slo_ms: float | None = Field(
        None, gt=0, description="mode=slo: p99 target for a request's time in the server (queue + compute)"
    )
    max_batch_size: int = Field(64, ge=1, description="rows in one model call")
    batch_timeout_ms: float = Field(
        5.0, ge=0, description="longest wait after the first queued row before running (fixed: always waited)"
    )
    batch_idle_timeout_ms: float = Field(
        1.0, ge=0, description="mode=fixed: run sooner once no request has joined the batch for this long (0 = off)"
    )
    max_queue_rows: int = Field(4096, ge=1, description="rows waiting per batcher; more are refused")
    num_batch_workers: int = Field(1, ge=1, description="batches computed at once per batcher")
    allowed_batch_sizes: list[int] = Field([], description="pad batches up to these sizes (ascending)")

    @model_validator(mode="after")
    def _slo_with_slo_mode(self) -> BatchingSettings:
        if self.mode == "slo" and self.latency_slo_ms is None:
            raise ValueError("mode='slo' needs latency_slo_ms (the p99 target in milliseconds)")
        if self.mode != "slo" and self.latency_slo_ms is not None:
            raise ValueError(f"latency_slo_ms is used only with mode='slo', not mode={self.mode!r}")
        return self

    @model_validator(mode="after")
    def _allowed_sizes_end_at_max(self) -> BatchingSettings:
        sizes = self.allowed_batch_sizes
        if sizes and (sorted(set(sizes)) != sizes or sizes[-1] != self.max_batch_size or sizes[0] < 1):
            raise ValueError("allowed_batch_sizes must be strictly ascending, positive, and end at max_batch_size")
        return self


def _overrides_of(section: type[BaseModel]) -> type[BaseModel]:
    """A model with every field of `section`, each optional (None = not overridden).

    Built from the section itself, so a field added to the section can be overridden per model
    at once; the merged values are validated by the section (see Settings.batching_for).
    """
    fields: dict[str, Any] = {
        name: (field.annotation | None, Field(None, description=field.description))
        for name, field in section.model_fields.items()
    }
    return create_model(f"{section.__name__}Overrides", __doc__=f"Per-model overrides of {section.__name__}.",
                        **fields)


BatchingOverrides = _overrides_of(BatchingSettings)


class ModelSettings(BaseModel):
    """Per-model overrides, under [models.<name>] in the config file.

    version_policy, num_versions, versions and version_labels apply live when the config
    file changes; variant and batching need a restart.
    """

    version_policy: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = Field(1, ge=1, description="with version_policy=latest")
    versions: list[int] = Field([], description="with version_policy=specific")
    version_labels: dict[str, int] = Field({}, description="label -> version, e.g. stable = 1")
    variant: Variant | None = None
    batching: BatchingOverrides = Field(  # type: ignore[valid-type]
        default_factory=BatchingOverrides, description="any [batching] key, for this model only"
    )

    @field_validator("version_labels")
    @classmethod
    def _labels_are_names(cls, labels: dict[str, int]) -> dict[str, int]:
        for label, version in labels.items():
            if not label or label.isdigit():
                raise ValueError(f"version_labels: label {label!r} must be a non-numeric name")
            if version <= 0:
                raise ValueError(f"version_labels: label {label!r} must point at a positive version, not {version}")
        return labels


class MetricsSettings(BaseModel):
    """The Prometheus endpoint."""

    enabled: bool = True
    host: str = Field("127.0.0.1", description="bind the metrics port privately: it has no auth")
    port: int = Field(8502, ge=0, le=65535)
    latency_buckets_s: list[float] = Field(DEFAULT_LATENCY_BUCKETS_S, description="histogram bucket bounds")

    @field_validator("latency_buckets_s")
    @classmethod
    def _buckets_ascending(cls, buckets: list[float]) -> list[float]:
        if not buckets or sorted(set(buckets)) != buckets or buckets[0] <= 0:
            raise ValueError("latency_buckets_s must be positive and strictly ascending")
        return buckets


class LoggingSettings(BaseModel):
    """Structured logs."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, description="one JSON object per line")
    access_log_sample_rate: float = Field(0.0, ge=0, le=1, description="fraction of calls logged")


class SecuritySettings(BaseModel):
    """TLS and bearer-token auth on the gRPC and HTTP ports."""

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(None, description="set to require client certificates (mTLS)")
    auth_token_file: Path | None = Field(None, description="one accepted bearer token per line")
    auth_tokens: list[str] = Field([], description="accepted bearer tokens (prefer the file)")

    @model_validator(mode="after")
    def _tls_files_together(self) -> SecuritySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_tokens) or self.auth_token_file is not None


class Settings(BaseSettings):
    """The whole server configuration."""

    model_config = SettingsConfigDict(
        env_prefix="BATCHWISE_",
        env_nested_delimiter="__",
        cli_kebab_case=True,
        cli_prog_name="python -m service",
        cli_implicit_flags=True,
        extra="forbid",
    )

    config_file: Path | None = Field(None, description="TOML file with any of these settings")
    server: ServerSettings = ServerSettings()
    http: HttpSettings = HttpSettings()
    repository: RepositorySettings = RepositorySettings()
    runtime: RuntimeSettings = RuntimeSettings()
    batching: BatchingSettings = BatchingSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    security: SecuritySettings = SecuritySettings()
    models: dict[str, ModelSettings] = Field({}, description="per-model settings by model name")
    _origin: tuple[tuple[str, ...], dict[str, Any]] | None = PrivateAttr(None)  # what load_settings was given

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        """Every key of every source, merged: unknown ones are refused here, whatever the nesting."""
        if isinstance(data, dict):
            check_keys(cls, data)
        return data

    @model_validator(mode="after")
    def _model_overrides_valid(self) -> Settings:
        for model in self.models:
            try:
                self.batching_for(model)  # a bad override stops the start, not the model's first load
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'batching'}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"models.{model}.batching (merged with [batching]): {problems}") from None
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = getattr(init_settings, "init_kwargs", {}).get("config_file")  # load_settings puts it there
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def reloadable(self) -> bool:
        """True when built by load_settings, so `reload()` can rebuild it the same way."""
        return self._origin is not None

    def reload(self) -> Settings:
        """A fresh Settings from the same argv and overrides as this one (CLI > env > file re-read).

        Raises as load_settings does, and RuntimeError if this object was not built by load_settings.
        """
        if self._origin is None:
            raise RuntimeError("only settings built by load_settings can be reloaded")
        args, overrides = self._origin
        return load_settings(list(args), **copy.deepcopy(overrides))

    def batching_for(self, model: str) -> BatchingSettings:
        """The batching settings for `model`: server defaults updated by its overrides."""
        overrides = self.models.get(model, ModelSettings()).batching.model_dump(exclude_none=True)
        return BatchingSettings.model_validate({**self.batching.model_dump(), **overrides})

    def variant_for(self, model: str) -> Variant:
        """The variant setting for `model`, falling back to the server-wide one."""
        override = self.models.get(model, ModelSettings()).variant
        return override or self.runtime.variant


def load_settings(argv: list[str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from argv (CLI), the BATCHWISE_* environment and the config file they name.

    Keyword overrides (used by tests and embedders) win over everything else. The result
    remembers argv and overrides so that `Settings.reload()` rebuilds it the same way.
    Raises UnknownSettingError (a key no setting has, from any source), pydantic.ValidationError,
    FileNotFoundError, or SystemExit (--help, malformed flags).
    """
    import argparse
    import os

    args = list(argv or [])
    check_cli(Settings, args)
    check_env(Settings, os.environ)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config-file", type=Path, default=None)
    config_file = pre.parse_known_args(args)[0].config_file or overrides.get("config_file")
    if config_file is None and os.environ.get("BATCHWISE_CONFIG_FILE"):
        config_file = Path(os.environ["BATCHWISE_CONFIG_FILE"])
    if config_file is not None and not Path(config_file).is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")
    if config_file is not None:
        check_file(Settings, Path(config_file))
    origin = (tuple(args), copy.deepcopy(overrides))
    # The config file is itself a setting (CLI or env), resolved above; the sources read it from here.
    file_hint = {"config_file": Path(config_file)} if config_file is not None else {}
    cli = CliSettingsSource(Settings, root_parser=None)
    settings = Settings(_cli_settings_source=cli(args=args), **(overrides | file_hint))
    settings._origin = origin
    return settings
