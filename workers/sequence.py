"""One generated sequence as every engine sees it: its budget, its text stream, its tool calls, and
the delta each step makes (text safe to send, tool calls, log-probabilities, and the finish
reason: EOS, a stop string, the budget, or the tool calls it made)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from collections.abc import Sequence as Ids
from dataclasses import dataclass, field

from protocol import Delta, Details, Generate, TokenLogprob
from workers.grammar import Constraint, constraint
from workers.prompts import token_budget
from workers.textstream import TextStream
from workers.tool_calls import ToolCallOutput


@dataclass
class Sequence:
    request_id: str
    prompt: list[int]
    budget: int  # most tokens it may generate
    ignore_eos: bool
    text: TextStream
    tools: ToolCallOutput | None = None  # set when tools are offered
    grammar: Constraint | None = None  # what it is decoded under, if anything
    logprobs: int | None = None  # alternatives per token, when log-probabilities are asked for
    echo: bool = False  # the prompt's log-probabilities go with the first delta
    generated: int = field(default=0, init=False)
    done: bool = field(default=False, init=False)
    prompt_logprobs: list[TokenLogprob] | None = field(default=None, init=False)

    @classmethod
    def start(
        cls,
        request: Generate,
        prompt: list[int],
        context_length: int,
        decode: Callable[[Ids[int]], str],
    ) -> Sequence:
        """Raises RequestError when the prompt is empty or leaves no room in the context, or its
        schema cannot be used."""
        tools = ToolCallOutput(request)
        grammar = constraint(request)
        return cls(
            request_id=request.request_id,
            prompt=prompt,
            budget=token_budget(len(prompt), request.params.max_tokens, context_length),
            ignore_eos=request.params.ignore_eos and grammar is None,  # a finished grammar allows only EOS
            text=TextStream(decode, request.params.stop, prompt),
            tools=tools if tools.active else None,
            grammar=grammar,
            logprobs=request.logprobs,
            echo=request.echo,
        )

    def advance(self, tokens: Ids[int], eos_ids: Collection[int], logprobs: Ids[TokenLogprob] = ()) -> Delta:
        """Take the tokens one step generated (an engine may emit more than one; their
        log-probabilities, when asked for); the delta says what to send and whether it ended."""
        text, count, finish = "", 0, None
        for token in tokens:
            count += 1
            self.generated += 1
            if token in eos_ids and not self.ignore_eos:
                text, finish = text + self.text.flush(), "stop"
                break
            text += self.text.push(token)
            if self.text.stopped:
                finish = "stop"
                break
            if self.generated >= self.budget:
                text, finish = text + self.text.flush(), "length"
                break
        assert count, "a step gives a sequence at least one token"
        return self._delta(text, count, finish, list(logprobs[:count]))

    def end(self, finish_reason: str) -> Delta:
        """The last delta, when the engine ended the sequence by its own stop criteria."""
        return self._delta(self.text.flush(), 0, finish_reason, [])

    def _delta(self, text: str, tokens: int, finish: str | None, logprobs: list[TokenLogprob]) -> Delta:
        calls = None
        if self.tools is not None:
            text = self.tools.push(text)
            if finish is not None:
                rest, calls = self.tools.finish()
                text += rest
                finish = "tool_calls" if calls else finish
        details = None
        first = self.echo and self.prompt_logprobs is not None
        if calls or logprobs or first:
            details = Details(calls or None, logprobs or None, self.prompt_logprobs if first else None)
        if first:
            self.prompt_logprobs = None  # sent once, with the first delta
        if finish is None:
            return Delta(self.request_id, text, tokens, details=details)
        self.done = True
        return Delta(
            self.request_id,
            text,
            tokens,
            finish,
            len(self.prompt),
            self.generated,
            self.text.stop_word,
            details,
        )
