"""Every bad input gets a defined, OpenAI-shaped answer, and the server goes on serving."""

import httpx
import openai
import pytest

M = '"model": "smollm2-135m-instruct"'
Q = '"messages": [{"role": "user", "content": "hi"}]'
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
BAD = "invalid_request_error"

# (name, method, path, body bytes, status, error type, param)
CASES = [
    ("invalid json", "POST", CHAT, b"{not json", 400, BAD, None),
    ("empty body", "POST", CHAT, b"", 400, BAD, None),
    ("json null", "POST", CHAT, b"null", 400, BAD, None),
    ("json array", "POST", CHAT, b"[1, 2]", 400, BAD, None),
    ("json string", "POST", CHAT, b'"hello"', 400, BAD, None),
    (
        "non-utf8 bytes",
        "POST",
        CHAT,
        b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
        400,
        BAD,
        None,
    ),
    (
        "lone surrogate",
        "POST",
        CHAT,
        f'{{{M}, "messages": [{{"role": "user", "content": "\\ud800"}}]}}'.encode(),
        400,
        BAD,
        None,
    ),
    ("missing model", "POST", CHAT, f"{{{Q}}}".encode(), 400, BAD, "model"),
    ("empty model", "POST", CHAT, f'{{"model": "", {Q}}}'.encode(), 400, BAD, "model"),
    ("model not a string", "POST", CHAT, f'{{"model": 5, {Q}}}'.encode(), 400, BAD, "model"),
    ("unknown model", "POST", CHAT, f'{{"model": "gpt-9", {Q}}}'.encode(), 404, BAD, "model"),
    ("missing messages", "POST", CHAT, f"{{{M}}}".encode(), 400, BAD, "messages"),
    ("empty messages", "POST", CHAT, f'{{{M}, "messages": []}}'.encode(), 400, BAD, "messages"),
    ("messages not a list", "POST", CHAT, f'{{{M}, "messages": "hi"}}'.encode(), 400, BAD, "messages"),
    (
        "unknown role",
        "POST",
        CHAT,
        f'{{{M}, "messages": [{{"role": "wizard", "content": "x"}}]}}'.encode(),
        400,
        BAD,
        "messages[0].role",
    ),
    (
        "missing role",
        "POST",
        CHAT,
        f'{{{M}, "messages": [{{"content": "x"}}]}}'.encode(),
        400,
        BAD,
        "messages[0].role",
    ),
    (
        "content a number",
        "POST",
        CHAT,
        f'{{{M}, "messages": [{{"role": "user", "content": 5}}]}}'.encode(),
        400,
        BAD,
        "messages[0].content",
    ),
    (
        "image content part",
        "POST",
        CHAT,
        f'{{{M}, "messages": [{{"role": "user", "content": [{{"type": "image_url"}}]}}]}}'.encode(),
        400,
        BAD,
        "messages[0].content[0].type",
    ),
    (
        "temperature too high",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "temperature": 5}}'.encode(),
        400,
        BAD,
        "temperature",
    ),
    (
        "temperature negative",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "temperature": -1}}'.encode(),
        400,
        BAD,
        "temperature",
    ),
    (
        "temperature a string",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "temperature": "hot"}}'.encode(),
        400,
        BAD,
        "temperature",
    ),
    ("temperature NaN", "POST", CHAT, f'{{{M}, {Q}, "temperature": NaN}}'.encode(), 400, BAD, "temperature"),
    ("top_p zero", "POST", CHAT, f'{{{M}, {Q}, "top_p": 0}}'.encode(), 400, BAD, "top_p"),
    ("top_p above one", "POST", CHAT, f'{{{M}, {Q}, "top_p": 1.5}}'.encode(), 400, BAD, "top_p"),
    (
        "presence penalty",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "presence_penalty": 3}}'.encode(),
        400,
        BAD,
        "presence_penalty",
    ),
    (
        "frequency penalty",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "frequency_penalty": -3}}'.encode(),
        400,
        BAD,
        "frequency_penalty",
    ),
    (
        "repetition penalty zero",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "repetition_penalty": 0}}'.encode(),
        400,
        BAD,
        "repetition_penalty",
    ),
    ("max_tokens zero", "POST", CHAT, f'{{{M}, {Q}, "max_tokens": 0}}'.encode(), 400, BAD, "max_tokens"),
    ("max_tokens negative", "POST", CHAT, f'{{{M}, {Q}, "max_tokens": -5}}'.encode(), 400, BAD, "max_tokens"),
    ("max_tokens a float", "POST", CHAT, f'{{{M}, {Q}, "max_tokens": 1.5}}'.encode(), 400, BAD, "max_tokens"),
    ("seed a float", "POST", CHAT, f'{{{M}, {Q}, "seed": 1.5}}'.encode(), 400, BAD, "seed"),
    ("seed beyond 64 bits", "POST", CHAT, f'{{{M}, {Q}, "seed": {2**70}}}'.encode(), 400, BAD, "seed"),
    (
        "five stop strings",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "stop": ["a", "b", "c", "d", "e"]}}'.encode(),
        400,
        BAD,
        "stop",
    ),
    ("empty stop string", "POST", CHAT, f'{{{M}, {Q}, "stop": [""]}}'.encode(), 400, BAD, "stop"),
    ("n above the cap", "POST", CHAT, f'{{{M}, {Q}, "n": 17}}'.encode(), 400, BAD, "n"),
    ("logit_bias", "POST", CHAT, f'{{{M}, {Q}, "logit_bias": {{"1": 5}}}}'.encode(), 400, BAD, "logit_bias"),
    (
        "top_logprobs without logprobs",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "top_logprobs": 2}}'.encode(),
        400,
        BAD,
        "top_logprobs",
    ),
    (
        "top_logprobs past 20",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "logprobs": true, "top_logprobs": 21}}'.encode(),
        400,
        BAD,
        "top_logprobs",
    ),
    (
        "alternatives the openvino engine cannot give",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "logprobs": true, "top_logprobs": 2}}'.encode(),
        400,
        BAD,
        "top_logprobs",
    ),
    (
        "tool without a function",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "tools": [{{"type": "function"}}]}}'.encode(),
        400,
        BAD,
        "tools[0].function",
    ),
    (
        "tool_choice naming no tool",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "tools": [{{"type": "function", "function": {{"name": "a"}}}}], '
        f'"tool_choice": {{"type": "function", "function": {{"name": "b"}}}}}}'.encode(),
        400,
        BAD,
        "tool_choice",
    ),
    (
        "required without tools",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "tool_choice": "required"}}'.encode(),
        400,
        BAD,
        "tool_choice",
    ),
    (
        "unknown response_format type",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "response_format": {{"type": "yaml"}}}}'.encode(),
        400,
        BAD,
        "response_format",
    ),
    (
        "a schema the grammar compiler refuses",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "response_format": {{"type": "json_schema", "json_schema": '
        f'{{"name": "x", "schema": {{"type": "wat"}}}}}}}}'.encode(),
        400,
        BAD,
        "response_format",
    ),
    (
        "tool message without its call id",
        "POST",
        CHAT,
        f'{{{M}, "messages": [{{"role": "tool", "content": "x"}}]}}'.encode(),
        400,
        BAD,
        "messages[0]",
    ),
    ("stream not a bool", "POST", CHAT, f'{{{M}, {Q}, "stream": "yes"}}'.encode(), 400, BAD, "stream"),
    (
        "bad stream_options",
        "POST",
        CHAT,
        f'{{{M}, {Q}, "stream_options": {{"include_usage": "maybe"}}}}'.encode(),
        400,
        BAD,
        "stream_options.include_usage",
    ),
    ("missing prompt", "POST", COMPLETIONS, f"{{{M}}}".encode(), 400, BAD, "prompt"),
    ("empty prompt", "POST", COMPLETIONS, f'{{{M}, "prompt": ""}}'.encode(), 400, BAD, "prompt"),
    ("empty token prompt", "POST", COMPLETIONS, f'{{{M}, "prompt": [[]]}}'.encode(), 400, BAD, "prompt"),
    (
        "mixed prompt list",
        "POST",
        COMPLETIONS,
        f'{{{M}, "prompt": ["a", 1]}}'.encode(),
        400,
        BAD,
        "prompt[1]",
    ),
    ("negative token id", "POST", COMPLETIONS, f'{{{M}, "prompt": [-1]}}'.encode(), 400, BAD, "prompt[0]"),
    ("token id past vocab", "POST", COMPLETIONS, f'{{{M}, "prompt": [999999]}}'.encode(), 400, BAD, "prompt"),
    ("huge token id", "POST", COMPLETIONS, f'{{{M}, "prompt": [{2**70}]}}'.encode(), 400, BAD, "prompt[0]"),
    (
        "prompt over the context",
        "POST",
        COMPLETIONS,
        f'{{{M}, "prompt": [{", ".join(["100"] * 9000)}]}}'.encode(),
        400,
        BAD,
        "messages",
    ),
    (
        "logprobs past 5",
        "POST",
        COMPLETIONS,
        f'{{{M}, "prompt": "a", "logprobs": 6}}'.encode(),
        400,
        BAD,
        "logprobs",
    ),
    (
        "more sequences than a request may take",
        "POST",
        COMPLETIONS,
        f'{{{M}, "prompt": {["a"] * 33}, "n": 2}}'.replace("'", '"').encode(),
        400,
        BAD,
        "prompt",
    ),
    ("suffix", "POST", COMPLETIONS, f'{{{M}, "prompt": "a", "suffix": "b"}}'.encode(), 400, BAD, "suffix"),
    (
        "echo with log-probabilities on openvino",
        "POST",
        COMPLETIONS,
        f'{{{M}, "prompt": "a", "echo": true, "logprobs": 0}}'.encode(),
        400,
        BAD,
        "echo",
    ),
    ("body too large", "POST", CHAT, b'{"model": "' + b"x" * (5 * 1024 * 1024) + b'"}', 413, BAD, None),
    ("unknown route", "GET", "/v1/nothing", b"", 404, BAD, None),
    ("wrong method", "GET", CHAT, b"", 405, BAD, None),
    ("wrong method on models", "DELETE", "/v1/models", b"", 405, BAD, None),
    ("unknown model object", "GET", "/v1/models/gpt-9", b"", 404, BAD, "model"),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "status", "kind", "param"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_request(server, name, method, path, body, status, kind, param):
    response = httpx.request(
        method, server.url + path, content=body, timeout=30, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and error["message"] and set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param


def test_there_are_at_least_30_cases_and_the_server_still_serves(server):
    assert len(CASES) >= 30
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content


def test_huge_max_tokens_is_clamped_to_the_context(server):
    body = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2**70,
        "stop": [" "],
        "temperature": 0,  # sampled, it may wander without a space for longer than the timeout
    }
    response = httpx.post(f"{server.url}{CHAT}", json=body, timeout=60)
    assert response.status_code == 200
