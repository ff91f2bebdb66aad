"""An encoder's tokenizer on the `tokenizers` library alone: what the OpenVINO and ONNX Runtime
encoders (embeddings, rerank) and the tokenize routes ask of a Hugging Face tokenizer, without
importing transformers, which imports torch (measured: an OpenVINO embedding worker holds 498 MB
with transformers' tokenizer, 289 MB without; torch's import alone is about 210 MB).

It reads the same tokenizer.json that transformers' fast tokenizer wraps, so the ids are the
same; the truncation and padding a tokenizer.json may carry (all-MiniLM-L6-v2's: 128 tokens) are
turned off, as transformers does unless a call asks for them."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Encoding, Tokenizer

TOKENIZER_FILE = "tokenizer.json"


class EncoderTokenizer:
    chat_template = None  # an encoder has none

    def __init__(self, directory: Path) -> None:
        self.backend = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self.backend.no_truncation()
        self.backend.no_padding()
        config_file = directory / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = self.backend.token_to_id(pad) if pad else None

    @classmethod
    def readable(cls, directory: Path) -> bool:
        return (directory / TOKENIZER_FILE).is_file()

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
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, token: int) -> str | None:
        return self.backend.id_to_token(token)
