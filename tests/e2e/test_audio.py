"""Speech to text through the real server and the real `openai` client: sentences spoken by
Debian's espeak-ng (wav, and mp3 and ogg made by ffmpeg) transcribed by the default whisper-base
(faster-whisper on CTranslate2, loaded on first use) with a word error rate of at most 20%, in
every response format; subtitles with times that only go forward; a stream whose deltas add up to
the whole; a text file refused; a client that goes away stops the work."""

import re
import shutil
import subprocess
import time
import wave

import httpx
import openai
import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
    reason="make test installs espeak-ng and ffmpeg",
)
MODEL = "whisper-base"
SENTENCE = "The quick brown fox jumps over the lazy dog. Speech recognition should write this sentence down."
# spoken slowly (-s 100), about 38 s: two of Whisper's thirty-second windows, several segments (at
# -s 140 it fits one window, whose segments all come at once: a client hanging up after the first
# would find nothing left to cancel)
STORY = (
    "The old lighthouse stood on a rock at the end of the harbour. Every night the keeper climbed "
    "the stairs and lit the lamp. Ships far out at sea could see its light and knew where the "
    "rocks were. One winter a storm broke the windows and the keeper worked until morning to mend "
    "them. The next evening the light shone again across the water. The fishermen thanked him with "
    "a basket of bread and fresh fish."
)


def words(text):
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def word_error_rate(reference, heard):
    """Word-level edit distance over the reference's length."""
    ref, hyp = words(reference), words(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / len(ref)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    directory = tmp_path_factory.mktemp("speech")
    wav = directory / "sentence.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), SENTENCE], check=True)
    for suffix in ("mp3", "ogg"):
        subprocess.run(
            ["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), str(wav.with_suffix(f".{suffix}"))],
            check=True,
        )
    long = directory / "long.wav"
    subprocess.run(["espeak-ng", "-s", "100", "-w", str(long), STORY], check=True)
    with wave.open(str(long)) as spoken:
        assert spoken.getnframes() / spoken.getframerate() > 32, "the story fits one Whisper window"
    return directory


@pytest.mark.parametrize("suffix", ["wav", "mp3", "ogg"])
def test_spoken_sentences_come_back_with_at_most_a_fifth_of_the_words_wrong(client, recordings, suffix):
    with (recordings / f"sentence.{suffix}").open("rb") as audio:
        reply = client.audio.transcriptions.create(model=MODEL, file=audio, timeout=300)
    assert word_error_rate(SENTENCE, reply.text) <= 0.2, reply.text
    assert reply.usage.seconds >= 4


def test_every_response_format(client, recordings):
    wav = recordings / "sentence.wav"
    text = client.audio.transcriptions.create(model=MODEL, file=wav, response_format="text")
    assert isinstance(text, str) and word_error_rate(SENTENCE, text) <= 0.2
    verbose = client.audio.transcriptions.create(
        model=MODEL, file=wav, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert verbose.language == "en" and 4 < verbose.duration < 10
    assert word_error_rate(SENTENCE, verbose.text) <= 0.2
    assert verbose.segments and all(s.start < s.end for s in verbose.segments)
    assert len(verbose.words) >= 10 and all(w.start <= w.end for w in verbose.words)
    for kind in ("srt", "vtt"):
        subtitles = client.audio.transcriptions.create(model=MODEL, file=wav, response_format=kind)
        stamps = re.findall(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)", subtitles)
        seconds = [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in stamps]
        assert len(seconds) >= 2 and seconds == sorted(seconds), subtitles
        assert subtitles.startswith("WEBVTT") if kind == "vtt" else subtitles.startswith("1\n")
        assert word_error_rate(SENTENCE, re.sub(r".*-->.*|^\d+$|WEBVTT", " ", subtitles, flags=re.M)) <= 0.2
    english = client.audio.translations.create(model=MODEL, file=wav)
    assert word_error_rate(SENTENCE, english.text) <= 0.2


def test_a_streamed_transcriptions_deltas_add_up_to_the_whole(client, recordings):
    with (recordings / "long.wav").open("rb") as audio:
        events = list(client.audio.transcriptions.create(model=MODEL, file=audio, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    (done,) = [e for e in events if e.type == "transcript.text.done"]
    assert len(deltas) >= 3 and "".join(deltas).strip() == done.text
    assert word_error_rate(STORY, done.text) <= 0.2, done.text


def test_a_text_file_is_refused_and_nothing_else_breaks(client, server, recordings):
    with pytest.raises(openai.BadRequestError, match="not audio"):
        client.audio.transcriptions.create(model=MODEL, file=("notes.wav", b"just some text\n" * 100))
    with pytest.raises(openai.BadRequestError, match="response_format verbose_json"):
        client.audio.transcriptions.create(
            model=MODEL, file=recordings / "sentence.wav", timestamp_granularities=["word"]
        )
    reply = httpx.post(f"{server.url}/v1/audio/transcriptions", json={"model": MODEL}, timeout=30)
    assert reply.status_code == 400 and "multipart" in reply.json()["error"]["message"]
    listed = {m["id"]: m for m in client.models.list().model_dump()["data"]}
    assert listed[MODEL]["task"] == "transcription"


def test_a_client_that_goes_away_stops_the_transcription(server, recordings):
    def whisper():
        status = httpx.get(f"{server.url}/v1/models/status", timeout=10).json()["data"]
        return next(m for m in status if m["id"] == MODEL)

    before = whisper()["cancelled"]
    files = {"file": ("long.wav", (recordings / "long.wav").read_bytes(), "audio/wav")}
    with httpx.stream(
        "POST",
        f"{server.url}/v1/audio/transcriptions",
        files=files,
        data={"model": MODEL, "stream": "true"},
        timeout=300,
    ) as reply:
        assert reply.status_code == 200
        next(reply.iter_lines())  # the first segment's delta: then the client hangs up
    deadline = time.monotonic() + 10
    while whisper()["cancelled"] == before or whisper()["running"]:
        assert time.monotonic() < deadline, whisper()
        time.sleep(0.2)
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'enginehouse_audio_seconds_total{model="whisper-base"}' in metrics
    assert "enginehouse_transcription_realtime_factor_bucket" in metrics
