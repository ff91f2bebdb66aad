"""A Hugging Face tokenizer directory (tokenizer.json, tokenizer_config.json, the chat template) on
the `tokenizers` library alone: what every engine asks of a model's tokenizer (ids, text, special
tokens, the chat template) without importing transformers. transformers' fast tokenizer class wraps
the same tokenizer.json, so the ids and text are the same (tests/workers/test_hf_tokenizer.py
compares them); its import costs a worker ~24 MB and 0.6-0.8 s of CPU (AutoTokenizer's also imports
torch, about 210 MB). What transformers does on top of the file, done here the same way:
- the truncation and padding a tokenizer.json may carry (all-MiniLM-L6-v2's: 128 tokens) are turned
  off unless a call asks for them;
- the named special tokens (tokenizer_config.json, else special_tokens_map.json) are added when the
  file lacks them; the file's post-processor adds the BOS/EOS tokens a text gets (transformers 5's
  class for a tokenizer.json leaves `add_bos_token` in the config aside: measured);
- decoding cleans up tokenization spaces when the config asks, except for BPE;
- the chat template is the config's, else chat_template.jinja, with named ones in
  additional_chat_templates/ (`chat_template` is then a dict, as transformers makes it).
Rendering the template is workers/chat_template.py's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Encoding, Tokenizer, models

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_CLEAN_UP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _content(token: Any) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


def _chat_template(directory: Path, config: dict[str, Any]) -> str | dict[str, str] | None:
    templates: dict[str, str] = {}
    if (file := directory / "chat_template.jinja").is_file():
        templates["default"] = file.read_text(encoding="utf-8")
    for file in sorted((directory / "additional_chat_templates").glob("*.jinja")):
        templates[file.stem] = file.read_text(encoding="utf-8")
    if not templates:
        template = config.get("chat_template")
        if isinstance(template, list):
            return {t["name"]: t["template"] for t in template}
        return template
    return templates["default"] if list(templates) == ["default"] else templates


class HfTokenizer:
    def __init__(self, directory: Path) -> None:
        self.backend = backend = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        backend.no_truncation()
        backend.no_padding()
        config = {
            **_read_json(directory / "special_tokens_map.json"),
            **_read_json(directory / "tokenizer_config.json"),
        }
        self.chat_template = _chat_template(directory, config)
        named = {key: _content(config.get(key)) for key in SPECIAL_TOKENS}
        self.special_tokens_map: dict[str, str] = {k: v for k, v in named.items() if v}
        missing = [t for t in self.special_tokens_map.values() if backend.token_to_id(t) is None]
        if missing:
            backend.add_special_tokens([AddedToken(t, special=True) for t in dict.fromkeys(missing)])
        cleans = bool(config.get("clean_up_tokenization_spaces"))
        self._clean_up = cleans and not isinstance(backend.model, models.BPE)
        self.bos_token_id = self.token_id("bos_token")
        self.eos_token_id = self.token_id("eos_token")
        self.pad_token_id = self.token_id("pad_token")

    @classmethod
    def readable(cls, directory: Path) -> bool:
        return (directory / TOKENIZER_FILE).is_file()

    def token_id(self, name: str) -> int | None:
        token = self.special_tokens_map.get(name)
        return self.backend.token_to_id(token) if token else None

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(
        self,
        text: str | list[str],
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        truncation: str | None = None,
        max_length: int | None = None,
    ) -> dict[str, list]:
        """As transformers' call: a text (or a text and its pair) → its ids and token types; a list
        of texts → their ids. `truncation` "longest_first" with `max_length` cuts a pair to fit."""
        if isinstance(text, list):
            encodings = self.backend.encode_batch(text, add_special_tokens=add_special_tokens)
            return {"input_ids": [e.ids for e in encodings]}
        encoding = self._encode(text, text_pair, add_special_tokens, truncation, max_length)
        return {"input_ids": encoding.ids, "token_type_ids": encoding.type_ids}

    def _encode(
        self, text: str, pair: str | None, special: bool, truncation: str | None, max_length: int | None
    ) -> Encoding:
        if truncation is None or max_length is None:
            return self.backend.encode(text, pair, add_special_tokens=special)
        self.backend.enable_truncation(max_length, strategy=truncation)
        try:
            return self.backend.encode(text, pair, add_special_tokens=special)
        finally:
            self.backend.no_truncation()

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        if self._clean_up:
            for before, after in _CLEAN_UP:
                text = text.replace(before, after)
        return text

    def convert_ids_to_tokens(self, token: int) -> str | None:
        return self.backend.id_to_token(token)

    def for_transformers(self) -> Any:
        """transformers' fast tokenizer on a copy of this one (for libraries that take one:
        xgrammar's TokenizerInfo.from_huggingface); imports transformers."""
        from transformers.tokenization_utils_tokenizers import PreTrainedTokenizerFast

        copy = Tokenizer.from_str(self.backend.to_str())
        return PreTrainedTokenizerFast(tokenizer_object=copy, **self.special_tokens_map)
