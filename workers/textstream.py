"""Token ids in, safe text out: incremental detokenization and stop strings, shared by every engine.

Text is emitted only once it is complete UTF-8 (a token that ends inside a multi-byte character
decodes to U+FFFD and is held until the next one completes it), and the last `len(longest stop) - 1`
characters are held back until it is certain no stop string begins in them, so a stop string is
never sent, even when it is split across tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Prompt tokens decoded in front of the first generated ones, so that tokenizers whose decoding
# depends on the left context (leading spaces in SentencePiece) decode the first token right.
_CONTEXT_TOKENS = 4


class TextStream:
    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        stop: Sequence[str] = (),
        prompt_ids: Sequence[int] = (),
    ) -> None:
        self._decode = decode
        self._ids: list[int] = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)
        self._stop = [s for s in stop if s]
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._pending = ""
        self.stopped = False
        self.stop_word: str | None = None  # the stop string found

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text now safe to send. Sets `stopped` on a stop string."""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return self._release(full[len(prefix) :])

    def flush(self) -> str:
        """The sequence ended for another reason than a stop string: send what was held back."""
        text, self._pending = self._pending, ""
        return text

    def _release(self, new_text: str) -> str:
        if not self._stop:
            return new_text
        self._pending += new_text
        found = [(i, s) for s in self._stop if (i := self._pending.find(s)) >= 0]
        if found:
            cut, self.stop_word = min(found)
            self.stopped = True
            text, self._pending = self._pending[:cut], ""
            return text
        keep = min(self._hold, len(self._pending))
        text = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return text
