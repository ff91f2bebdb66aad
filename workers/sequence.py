"""One generated sequence as every engine sees it: its budget, its text stream, and the delta each
new token makes (text safe to send, and the finish reason: EOS, a stop string, or the budget)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from collections.abc import Sequence as Ids
from dataclasses import dataclass, field

import msgspec

from protocol import Delta, Generate
from workers.prompts import token_budget
from workers.textstream import TextStream


@dataclass
class Sequence:
    request_id: str
    prompt: list[int]
    budget: int  # most tokens it may generate
    ignore_eos: bool
    text: TextStream
    generated: int = field(default=0, init=False)
    done: bool = field(default=False, init=False)

    @classmethod
    def start(
        cls,
        request: Generate,
        prompt: list[int],
        context_length: int,
        decode: Callable[[Ids[int]], str],
    ) -> Sequence:
        """Raises RequestError when the prompt is empty or leaves no room in the context."""
        return cls(
            request_id=request.request_id,
            prompt=prompt,
            budget=token_budget(len(prompt), request.params.max_tokens, context_length),
            ignore_eos=request.params.ignore_eos,
            text=TextStream(decode, request.params.stop, prompt),
        )

    def advance(self, token: int, eos_ids: Collection[int]) -> Delta:
        """Take one generated token; the delta says what to send and whether the sequence ended."""
        self.generated += 1
        finish = None
        if token in eos_ids and not self.ignore_eos:
            text, finish = self.text.flush(), "stop"
        else:
            text = self.text.push(token)
            if self.text.stopped:
                finish = "stop"
            elif self.generated >= self.budget:
                text, finish = text + self.text.flush(), "length"
        if finish is None:
            return Delta(self.request_id, text, 1)
        return self.end(finish, text, 1)

    def end(self, finish_reason: str, text: str = "", tokens: int = 0) -> Delta:
        """The last delta: finished by the caller (or the engine's own stop criteria)."""
        self.done = True
        return Delta(
            self.request_id,
            text,
            tokens,
            finish_reason,
            len(self.prompt),
            self.generated,
            self.text.stop_word,
        )

    def advance_all(self, tokens: Ids[int], eos_ids: Collection[int]) -> Delta:
        """Several tokens from one step (an engine may emit more than one) as a single delta."""
        text, count, last = "", 0, None
        for token in tokens:
            last = self.advance(token, eos_ids)
            text, count = text + last.text, count + 1
            if self.done:
                break
        assert last is not None, "advance_all needs at least one token"
        return msgspec.structs.replace(last, text=text, tokens=count)
