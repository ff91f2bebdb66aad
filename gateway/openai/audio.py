"""Speech to text, OpenAI's shape: POST /v1/audio/transcriptions and /v1/audio/translations
(into English), multipart/form-data with `file`, `model`, `language` (transcriptions),
`prompt`, `response_format` (json, text, srt, vtt, verbose_json), `temperature`,
`timestamp_granularities[]` (segment, word: verbose_json) and `stream`.

The file goes to the worker as sent: it decodes the audio (a file that is not audio is its 400).
The transcription then runs on the one generation path: segment by segment, streamed as
`transcript.text.delta` events and a `transcript.text.done`, or collected into the format asked for.
"""

from __future__ import annotations

import math
import uuid
from typing import Literal

from aiohttp import BodyPartReader, web
from msgspec import json
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import APIError
from gateway.http import sse
from gateway.http.body import parse_body
from gateway.http.generation import Result, serve_generation, timeout_error
from gateway.middlewares import LOG_FIELDS
from gateway.state import SETTINGS
from protocol import Delta, Segment, Transcribe

Format = Literal["json", "text", "srt", "vtt", "verbose_json"]
MAX_FIELD_BYTES = 64 * 1024  # a form field other than the file


class TranscriptionForm(BaseModel):
    """The form's fields: text in a form, so numbers and booleans are read from text (lax)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, min_length=1)  # the first transcription model when left out
    language: str | None = Field(None, min_length=2, max_length=3)
    prompt: str | None = None
    response_format: Format = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["segment", "word"]] = ["segment"]
    stream: bool = False


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, translate=False)


async def translations(request: web.Request) -> web.StreamResponse:
    return await _serve(request, translate=True)


async def _serve(request: web.Request, translate: bool) -> web.StreamResponse:
    audio, form = await _read_form(request, request.app[SETTINGS].max_audio_bytes)
    if translate:
        form.language = None  # the translation's language is English; the audio's is found out
    words = "word" in form.timestamp_granularities
    if words and form.response_format != "verbose_json":
        raise APIError(
            400,
            "timestamp_granularities[] word needs response_format verbose_json.",
            "invalid_value",
            "timestamp_granularities",
        )
    model = form.model or request.app[SETTINGS].default_model("transcription")
    request[LOG_FIELDS]["audio_bytes"] = len(audio)
    message = Transcribe(
        uuid.uuid4().hex,
        audio,
        form.language,
        form.prompt,
        form.temperature,
        translate,
        words,
    )
    shape = TranscriptionShape(form.response_format, translate, words)
    task = "translation" if translate else "transcription"
    return await serve_generation(request, model, task, [message], shape, form.stream)


async def _read_form(request: web.Request, max_audio: int) -> tuple[bytes, TranscriptionForm]:
    """The file's bytes (bounded) and the other fields, validated."""
    if not request.content_type.startswith("multipart/"):
        raise APIError(400, "Send the audio as multipart/form-data with a `file` field.", "invalid_body")
    try:
        reader = await request.multipart()
        audio: bytes | None = None
        fields: dict[str, object] = {}
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart is no field of this form
            name = (part.name or "").removesuffix("[]")
            if name == "file":
                audio = await _read_part(part, max_audio, "file")
            elif name == "timestamp_granularities":
                granularities = fields.setdefault(name, [])
                assert isinstance(granularities, list)
                granularities.append((await _read_part(part, MAX_FIELD_BYTES, name)).decode(errors="replace"))
            elif name:
                fields[name] = (await _read_part(part, MAX_FIELD_BYTES, name)).decode(errors="replace")
    except ValueError as exc:  # a broken multipart body
        raise APIError(400, f"The form could not be read: {exc}", "invalid_body") from None
    if not audio:
        raise APIError(
            400, "The form has no `file` (the audio), or it is empty.", "missing_required_parameter", "file"
        )
    return audio, parse_body(json.encode(fields), TranscriptionForm)


async def _read_part(part: BodyPartReader, limit: int, name: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(1 << 16):
        size += len(chunk)
        if size > limit:
            what = "The audio file" if name == "file" else f"The field `{name}`"
            raise APIError(
                400, f"{what} is larger than this server takes ({limit} bytes).", "file_too_large", name
            )
        chunks.append(chunk)
    return b"".join(chunks)


class TranscriptionShape:
    def __init__(self, response_format: Format, translate: bool, words: bool) -> None:
        self.format, self.translate, self.words = response_format, translate, words

    def opening(self, result: Result) -> bytes:
        return b""

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        if not delta.text:
            return b""
        return sse.event({"type": "transcript.text.delta", "delta": delta.text, "logprobs": None})

    def closing(self, result: Result) -> bytes:
        done = {
            "type": "transcript.text.done",
            "text": _text(result),
            "logprobs": None,
            "usage": _usage(result),
        }
        return sse.event(done)

    def body(self, result: Result) -> object:
        choice = result.choices[0]
        text = _text(result)
        if self.format == "json":
            return {"text": text, "usage": _usage(result)}
        if self.format == "verbose_json":
            heard = choice.heard
            answer: dict[str, object] = {
                "task": "translate" if self.translate else "transcribe",
                "language": heard.language if heard else "",
                "duration": heard.duration if heard else 0.0,
                "text": text,
                "segments": [_segment(s) for s in choice.segments],
                "usage": _usage(result),
            }
            if self.words:
                answer["words"] = [
                    {"word": w.word, "start": w.start, "end": w.end}
                    for s in choice.segments
                    for w in s.words or ()
                ]
            return answer
        if self.format == "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        subtitles = _subtitles(choice.segments, vtt=self.format == "vtt")
        return web.Response(
            text=subtitles, content_type="text/vtt" if self.format == "vtt" else "application/x-subrip"
        )

    def error(self, exc: APIError | TimeoutError) -> APIError:
        return timeout_error(exc)

    def error_event(self, error: APIError) -> bytes:
        return sse.event({"type": "error", **error.body()})


def _text(result: Result) -> str:
    return result.choices[0].content.strip()


def _usage(result: Result) -> dict[str, object]:
    heard = result.choices[0].heard
    return {"type": "duration", "seconds": math.ceil(heard.duration) if heard else 0}


def _segment(s: Segment) -> dict[str, object]:
    return {
        "id": s.id,
        "seek": s.seek,
        "start": s.start,
        "end": s.end,
        "text": s.text,
        "tokens": s.tokens,
        "temperature": s.temperature,
        "avg_logprob": s.avg_logprob,
        "compression_ratio": s.compression_ratio,
        "no_speech_prob": s.no_speech_prob,
    }


def _subtitles(segments: list[Segment], vtt: bool) -> str:
    """SubRip (numbered cues, 00:00:01,000) or WebVTT (a header, 00:00:01.000)."""
    cues = []
    for number, s in enumerate(segments, 1):
        times = f"{_clock(s.start, vtt)} --> {_clock(s.end, vtt)}"
        cues.append(f"{times}\n{s.text.strip()}\n" if vtt else f"{number}\n{times}\n{s.text.strip()}\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(cues)


def _clock(seconds: float, vtt: bool) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{'.' if vtt else ','}{millis:03d}"


PATHS = {"/v1/audio/transcriptions": transcriptions, "/v1/audio/translations": translations}
