"""Anthropic's Messages API through the real `anthropic` SDK: text, the stream, a tool_use →
tool_result round trip, count_tokens, and errors in Anthropic's shape."""

import anthropic
import httpx
import pytest

MODEL = "smollm2-135m-instruct"
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
# the weather tool must be called; greedy (this SDK has no sampling arguments; the API takes them)
CALL_WEATHER = {
    "model": MODEL,
    "max_tokens": 100,
    "extra_body": {"temperature": 0},
    "tools": [WEATHER],
    "tool_choice": {"type": "any"},
    "messages": QUESTION,
}


@pytest.fixture
def claude(server):
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def test_create_answers_in_text(claude):
    message = claude.messages.create(
        model=MODEL, max_tokens=30, system="Be brief.", messages=[{"role": "user", "content": "Say hello."}]
    )
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 30


def test_max_tokens_and_stop_sequences_say_why_it_stopped(claude):
    cut = claude.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Tell me a long story."}]
    )
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 5
    stopped = claude.messages.create(
        model=MODEL,
        max_tokens=50,
        extra_body={"temperature": 0},  # this SDK has no sampling arguments; the API takes them
        stop_sequences=[" "],
        messages=[{"role": "user", "content": "Tell me a long story."}],
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == " "


def test_stream_gives_the_events_in_order(claude):
    with claude.messages.stream(
        model=MODEL, max_tokens=40, messages=[{"role": "user", "content": "Say hello."}]
    ) as stream:
        events = [event.type for event in stream]
        text = stream.get_final_text()
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert (
        events.index("content_block_start")
        < events.index("content_block_stop")
        < events.index("message_delta")
    )
    assert text and final.content[0].text == text and final.usage.output_tokens > 0


def test_a_tool_use_tool_result_round_trip(claude):
    asked = claude.messages.create(**CALL_WEATHER)
    assert asked.stop_reason == "tool_use"
    use = next(block for block in asked.content if block.type == "tool_use")
    assert use.name == "get_weather" and "city" in use.input
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 degrees Celsius."}
    told = claude.messages.create(
        model=MODEL,
        max_tokens=60,
        tools=[WEATHER],
        messages=[
            *QUESTION,
            {"role": "assistant", "content": asked.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert told.content and told.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert told.usage.input_tokens > asked.usage.input_tokens


def test_a_streamed_tool_use(claude):
    with claude.messages.stream(**CALL_WEATHER) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "content_block_delta" in kinds and final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use" and final.content[-1].input["city"]


def test_count_tokens_matches_what_generation_reads(claude):
    body = {"system": "Be brief.", "messages": [{"role": "user", "content": "Say hello."}]}
    counted = claude.messages.count_tokens(model=MODEL, **body)
    made = claude.messages.create(model=MODEL, max_tokens=1, **body)
    assert counted.input_tokens == made.usage.input_tokens


def test_errors_are_in_anthropics_shape(server, claude):
    missing = httpx.post(f"{server.url}/v1/messages", json={"model": MODEL, "messages": QUESTION}, timeout=30)
    assert missing.status_code == 400
    assert missing.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid value for `max_tokens`: Field required",
        },
    }
    with pytest.raises(anthropic.NotFoundError) as error:
        claude.messages.create(model="no-such-model", max_tokens=5, messages=QUESTION)
    assert error.value.body["error"]["type"] == "not_found_error"
