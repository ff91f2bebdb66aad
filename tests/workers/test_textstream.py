"""The text stream on a byte-level vocabulary (token id = one byte), where characters and stop
strings really do split across tokens."""

from workers.textstream import TextStream


def decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


def feed(stream, text):
    return [stream.push(b) for b in text.encode()]


def test_multibyte_characters_are_never_sent_broken():
    stream = TextStream(decode)
    pieces = feed(stream, "é😀a")
    assert pieces == ["", "é", "", "", "", "😀", "a"]
    assert "\ufffd" not in "".join(pieces)


def test_stop_string_split_across_tokens_is_not_sent():
    stream = TextStream(decode, stop=["STOP"])
    out = []
    for b in b"abc STOP def":
        out.append(stream.push(b))
        if stream.stopped:
            break
    assert "".join(out) == "abc "
    assert stream.stopped


def test_earliest_of_several_stop_strings_wins():
    stream = TextStream(decode, stop=["world", "lo w"])
    text = "".join(feed(stream, "hello world"))
    assert stream.stopped
    assert text == "hel"


def test_held_back_text_is_flushed_when_no_stop_string_comes():
    stream = TextStream(decode, stop=["xyz"])
    text = "".join(feed(stream, "abcxy"))
    assert text == "abc"
    assert stream.flush() == "xy"
    assert not stream.stopped


def test_prompt_context_is_not_emitted():
    stream = TextStream(decode, prompt_ids=list(b"prompt "))
    assert "".join(feed(stream, "answer")) == "answer"
