"""`enginehouse bench`'s options, as `vllm bench serve` users expect them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SLOS = ("ttft", "tpot", "e2el")
UNITS = {"s": 1, "m": 60, "h": 3600}


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="enginehouse bench",
        populate_by_name=True,
    )

    url: str = Field(
        "http://127.0.0.1:8000",
        validation_alias=AliasChoices("url", "base_url"),
        description="the server's base URL (--url or --base-url, as vllm bench serve names it); "
        "a trailing /v1 is dropped",
    )
    model: str = "smollm2-135m-instruct"
    endpoint: Literal["chat", "completions", "embeddings", "rerank", "transcriptions"] = "chat"
    api_key: str | None = None
    concurrency: int = Field(1, ge=1, description="requests in flight at most")
    request_rate: float = Field(
        math.inf, gt=0, description="requests per second, Poisson arrivals (inf: all at once)"
    )
    num_requests: int | None = Field(None, ge=1, description="default: the concurrency")
    duration: float | None = Field(
        None,
        gt=0,
        description="a soak run: keep sending this long (num-requests ignored): seconds, or 90s, 30m, 2h",
    )
    max_tokens: int = Field(128, ge=1)
    ignore_eos: bool = True
    temperature: float | None = Field(
        None, ge=0.0, description="sent with each chat or completion request (0: greedy); unset: the server's"
    )
    prompts: Path | None = Field(
        None, description='JSONL: one {"prompt": ...} or {"messages": [...]} per line, optional max_tokens'
    )
    json_schema: Path | None = Field(
        None, description="chat: constrain each answer to this JSON schema (response_format json_schema)"
    )
    input_len: int = Field(
        12, ge=1, description="built-in prompts: about this many words each (when no --prompts)"
    )
    documents: int = Field(16, ge=1, le=1000, description="rerank: documents per request")
    audio: Path | None = Field(None, description="transcriptions: the audio file each request sends")
    seed: int = Field(0, description="for the built-in prompts and the arrival times")
    goodput: list[str] = Field(
        [], description="SLOs a good request meets, in ms: --goodput ttft:500,tpot:50,e2el:5000"
    )
    respect_rate_limit: bool = Field(False, description="on 429, wait Retry-After and send again")
    json_out: Path | None = Field(None, alias="json", description="write the report as JSON here")
    plot: Path | None = Field(None, description="draw TTFT/ITL distributions and throughput here (PNG)")
    progress: bool = Field(True, description="a progress bar on stderr (when it is a terminal)")

    @field_validator("url")
    @classmethod
    def _base(cls, value: str) -> str:
        value = value.rstrip("/")
        return value.removesuffix("/v1")

    @field_validator("duration", mode="before")
    @classmethod
    def _with_unit(cls, value: object) -> object:
        if isinstance(value, str) and value[-1:] in UNITS and value[:-1].replace(".", "", 1).isdigit():
            return float(value[:-1]) * UNITS[value[-1]]
        return value

    @field_validator("goodput")
    @classmethod
    def _slos(cls, value: list[str]) -> list[str]:
        for item in value:
            name, _, ms = item.partition(":")
            if name not in SLOS or not ms.replace(".", "", 1).isdigit():
                raise ValueError(f"{item!r}: give NAME:MS with NAME one of {', '.join(SLOS)}")
        return value

    def slos(self) -> dict[str, float]:
        return {name: float(ms) for name, _, ms in (item.partition(":") for item in self.goodput)}
