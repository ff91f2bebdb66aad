"""Tokenize and detokenize with a model's own tokenizer, for the tokenize routes. Each token's
piece is its bytes: a token that is part of a multi-byte character (byte-level BPE) has bytes that
are not whole UTF-8, and the routes give those as byte lists, as llama.cpp's server does."""

from __future__ import annotations

from functools import cache
from typing import Any

from protocol import Detokenize, Detokenized, Generate, SamplingParams, Tokenize, Tokenized
from workers.engines.base import RequestError
from workers.prompts import prompt_ids


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def piece(tokenizer: Any, token_id: int) -> bytes:
    text = tokenizer.decode([token_id])
    if "\ufffd" in text:  # maybe part of a character: byte-level BPE tokens map back to bytes
        token = tokenizer.convert_ids_to_tokens(token_id)
        table = _byte_decoder()
        if isinstance(token, str) and token and all(ch in table for ch in token):
            return bytes(table[ch] for ch in token)
    return text.encode()


def tokenize(tokenizer: Any, request: Tokenize) -> Tokenized:
    if request.messages is not None:
        chat = Generate(request.request_id, SamplingParams(), messages=request.messages, tools=request.tools)
        ids = prompt_ids(tokenizer, chat, len(tokenizer))
    else:
        ids = list(tokenizer.encode(request.text, add_special_tokens=request.add_special))
    pieces = [piece(tokenizer, i) for i in ids] if request.with_pieces else None
    return Tokenized(request.request_id, ids, pieces)


def detokenize(tokenizer: Any, request: Detokenize) -> Detokenized:
    vocab = len(tokenizer)
    bad = next((t for t in request.tokens if not 0 <= t < vocab), None)
    if bad is not None:
        raise RequestError(
            400, "invalid_tokens", f"token id {bad} is outside the vocabulary (0..{vocab - 1})", "tokens"
        )
    return Detokenized(request.request_id, tokenizer.decode(request.tokens))
