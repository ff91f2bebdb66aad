"""Structured outputs and tool calling on every engine, through the real server with the real
`openai` client and LangChain: answers decoded under a grammar always parse."""

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

ENGINES = ["smollm2-135m-instruct-openvino", "smollm2-135m-instruct-onnx", "smollm2-135m-instruct-torch"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The local time in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "format": {"type": "string", "enum": ["12h", "24h"]},
                },
                "required": ["city"],
            },
        },
    },
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


class City(BaseModel):
    name: str
    country: str
    population: int


@pytest.fixture(params=ENGINES)
def model(request):
    return request.param


def test_parse_gives_a_valid_object_for_20_seeds(client, model):
    schema = City.model_json_schema()

    def parse(seed: int):
        return client.chat.completions.parse(
            model=model,
            messages=[
                {"role": "user", "content": "Describe a famous city as JSON: name, country, population."}
            ],
            response_format=City,
            temperature=0.8,
            seed=seed,
            max_tokens=200,
        )

    with ThreadPoolExecutor(8) as pool:  # decoded together, as a server's clients would be
        replies = list(pool.map(parse, range(20)))
    for seed, reply in enumerate(replies):
        message = reply.choices[0].message
        assert isinstance(message.parsed, City), (seed, message.content)
        jsonschema.validate(json.loads(message.content), schema)


def test_json_object_is_an_object(client, model):
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Give me a JSON object with a cat's name and age."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def _check_calls(calls) -> None:
    assert calls
    for call in calls:
        assert call.id and call.type == "function" and call.function.name in SCHEMAS
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_required_always_gives_a_parseable_call(client, model):
    for seed in range(5):
        reply = client.chat.completions.create(
            model=model, messages=WEATHER, tools=TOOLS, tool_choice="required", temperature=0.8, seed=seed
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        _check_calls(choice.message.tool_calls)


def test_a_named_function_is_the_one_called(client, model):
    reply = client.chat.completions.create(
        model=model,
        messages=WEATHER,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        temperature=0,
    )
    calls = reply.choices[0].message.tool_calls
    _check_calls(calls)
    assert [c.function.name for c in calls] == ["get_time"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_round_trip(client, model, stream):
    first = _complete(client, model, WEATHER, "required", stream)
    assert first["finish_reason"] == "tool_calls"
    calls = first["tool_calls"]
    assert len(calls) == 1 and calls[0]["function"]["name"] in SCHEMAS
    messages = [
        *WEATHER,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "Sunny, 22 degrees Celsius"},
    ]
    final = _complete(client, model, messages, "auto", stream)
    assert final["finish_reason"] in ("stop", "length", "tool_calls")
    assert final["content"] or final["tool_calls"]


def _complete(client, model, messages, tool_choice, stream) -> dict:
    """The answer as one dict (content, tool_calls, finish_reason), put together from the chunks
    when streamed, as a client does."""
    kwargs = dict(
        model=model, messages=messages, tools=TOOLS, tool_choice=tool_choice, temperature=0, max_tokens=80
    )
    if not stream:
        choice = client.chat.completions.create(**kwargs).choices[0]
        calls = [c.model_dump() for c in choice.message.tool_calls or []]
        return {"content": choice.message.content, "tool_calls": calls, "finish_reason": choice.finish_reason}
    content, calls, finish = "", [], None
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for part in delta.tool_calls or []:
            if part.id is not None:  # a call's first delta: id, type and name
                assert part.type == "function" and part.function.name
                calls.append(
                    {
                        "id": part.id,
                        "type": "function",
                        "function": {"name": part.function.name, "arguments": ""},
                    }
                )
            calls[part.index]["function"]["arguments"] += part.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    for call in calls:
        json.loads(call["function"]["arguments"])
    return {"content": content, "tool_calls": calls, "finish_reason": finish}


def test_auto_may_answer_in_text(client, model):
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=TOOLS,
        temperature=0,
        max_tokens=20,
    )
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls


def test_langchain_bind_tools_and_structured_output(server, model):
    llm = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model=model, temperature=0, max_retries=0)

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "sunny"

    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    assert isinstance(message.tool_calls[0]["args"]["city"], str)
    city = llm.with_structured_output(City).invoke("Describe Paris as JSON: name, country, population.")
    assert isinstance(city, City)


def test_constrained_and_plain_requests_share_the_worker(client):
    """A constrained request on the default model while a plain one runs: both answer."""
    plain = client.chat.completions.create(
        model="smollm2-135m-instruct",
        stream=True,
        max_tokens=60,
        messages=WEATHER,
        extra_body={"ignore_eos": True},
    )
    chunks = iter(plain)
    next(chunks)
    constrained = client.chat.completions.parse(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Describe Rome as JSON: name, country, population."}],
        response_format=City,
        temperature=0,
        max_tokens=100,
    )
    assert isinstance(constrained.choices[0].message.parsed, City)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_schema_the_engine_refuses_is_a_400_and_the_worker_lives(client, model):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=model,
            messages=WEATHER,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wat"}}},
        )
    assert error.value.body["param"] == "response_format" and "wat" in error.value.body["message"]
    reply = client.chat.completions.create(model=model, messages=WEATHER, max_tokens=5)
    assert reply.choices[0].message.content
