"""Speech to text on CTranslate2 through faster-whisper (Whisper models in CTranslate2's format).

A transcription runs like a generation: `add` decodes the audio (PyAV: wav, mp3, ogg/opus, flac,
webm, m4a...; resampled to 16 kHz) and starts Whisper on it; each `step` advances every running
transcription by one segment (at most one 30-second window of work each), so heartbeats and
cancels get through long audio, and a cancelled one stops at once. The text of each segment goes
out as a delta, its times in the delta's details; the first delta also says the language and the
audio's duration.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from protocol import Delta, Details, Failed, Generate, Heard, Segment, Transcribe, Word
from workers.engines.base import Capabilities, Engine, EngineStats, RequestError

log = structlog.get_logger()
SAMPLE_RATE = 16000
FORMATS = "wav, mp3, ogg/opus, flac, webm, m4a"


@dataclass
class _Job:
    segments: Iterator[Any]
    heard: Heard | None
    tokens: int = 0


class SpeechEngine(Engine):
    def __init__(
        self, model_dir: Path, device: str, threads: int, compute_type: str, beam_size: int, max_batch: int
    ) -> None:
        from faster_whisper import WhisperModel

        device = "auto" if device == "auto" else device.lower()
        self.model = WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads, num_workers=1
        )
        self.beam_size = beam_size
        self.tokenizer = None  # Whisper's tokenizer is not a Hugging Face one: no /tokenize here
        self.jobs: dict[str, _Job] = {}
        self.failures = []
        self.stats = EngineStats()
        self.capabilities = Capabilities(
            engine="ctranslate2",
            device=self.model.model.device,
            tasks=["transcription", "translation"],
            max_batch=max_batch,
            context_length=448,  # Whisper's decoder reads 448 tokens
        )
        log.info("speech engine ready", compute_type=compute_type, beam_size=beam_size, threads=threads)

    def add(self, request: Generate | Transcribe) -> None:
        if not isinstance(request, Transcribe):
            raise RequestError(400, "unsupported_task", "this model only transcribes speech", "model")
        audio = decode(request.audio)
        language = request.language
        if language is not None and language not in self.model.supported_languages:
            raise RequestError(
                400,
                "invalid_value",
                f"`{language}` is not a language this model knows (ISO-639-1)",
                "language",
            )
        if request.translate and not self.model.model.is_multilingual:
            raise RequestError(
                400, "unsupported_task", "this model only knows English: it cannot translate", "model"
            )
        temperature: float | tuple[float, ...] = request.temperature
        if request.temperature == 0:  # OpenAI's 0: start greedy, warmer when the output looks wrong
            temperature = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        segments, info = self.model.transcribe(
            audio,
            language=language,
            task="translate" if request.translate else "transcribe",
            initial_prompt=request.prompt or None,
            temperature=temperature,
            beam_size=self.beam_size,
            word_timestamps=request.words,
            vad_filter=False,
        )
        self.jobs[request.request_id] = _Job(segments, Heard(info.language, round(info.duration, 3)))
        self.stats.running = len(self.jobs)

    def cancel(self, request_id: str) -> None:
        job = self.jobs.pop(request_id, None)
        if job is not None:
            job.segments.close()  # type: ignore[attr-defined]
        self.stats.running = len(self.jobs)

    def has_work(self) -> bool:
        return bool(self.jobs)

    def step(self) -> list[Delta]:
        deltas = []
        for request_id, job in list(self.jobs.items()):
            try:
                found = next(job.segments, None)
            except Exception as exc:  # Whisper failed on this audio: it fails alone
                log.exception("transcription failed", request_id=request_id)
                self.jobs.pop(request_id)
                self.failures.append(
                    Failed(request_id, 500, "internal_error", f"transcription failed: {exc}")
                )
                continue
            heard, job.heard = job.heard, None
            if found is None:
                del self.jobs[request_id]
                deltas.append(
                    Delta(
                        request_id, "", 0, "stop", completion_tokens=job.tokens, details=_details(None, heard)
                    )
                )
                continue
            segment = _segment(found)
            job.tokens += len(segment.tokens)
            self.stats.tokens_generated += len(segment.tokens)
            deltas.append(
                Delta(request_id, segment.text, len(segment.tokens), details=_details(segment, heard))
            )
        self.stats.steps += 1
        self.stats.running = len(self.jobs)
        return deltas


def _details(segment: Segment | None, heard: Heard | None) -> Details | None:
    return Details(segment=segment, heard=heard) if segment is not None or heard is not None else None


def _segment(found: Any) -> Segment:
    words = None
    if found.words is not None:
        words = [
            Word(w.word, round(float(w.start), 3), round(float(w.end), 3), float(w.probability))
            for w in found.words
        ]
    return Segment(
        id=found.id - 1,  # faster-whisper counts from 1, OpenAI from 0
        seek=int(found.seek),
        start=round(float(found.start), 3),
        end=round(float(found.end), 3),
        text=found.text,
        tokens=list(found.tokens),
        temperature=float(found.temperature or 0.0),
        avg_logprob=float(found.avg_logprob),
        compression_ratio=float(found.compression_ratio),
        no_speech_prob=float(found.no_speech_prob),
        words=words,
    )


def decode(audio: bytes) -> Any:
    """The file's sound as 16 kHz mono float32 samples; a file that is not sound is a 400."""
    import av
    from faster_whisper import decode_audio

    try:
        samples = decode_audio(io.BytesIO(audio), sampling_rate=SAMPLE_RATE)
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise RequestError(
            400, "invalid_audio", f"The file is not audio this server can read ({FORMATS}): {exc}", "file"
        ) from None
    if len(samples) == 0:
        raise RequestError(400, "invalid_audio", "The file holds no sound.", "file")
    return samples
