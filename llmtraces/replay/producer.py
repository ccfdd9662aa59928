"""The replay's producer: a thread that builds the request bodies (prompts, JSON) from the
schedule ahead of time, into a bounded deque, so that the dispatcher only sends them."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .prompts import BodySpec, PromptBuilder, TextRenderer, encode, make_body
from .schedule import Scheduled

__all__ = ["Item", "Producer"]


@dataclass
class Item:
    """A request ready to send."""

    due: float
    request_id: int
    source_row: int
    session_id: str | None
    turn: int | None
    parent_request_id: int | None
    input_tokens: int
    max_tokens: int
    body: bytes | None          # None: not sendable (bad_prompt)
    detail: str | None = None
    recorded: bool = False


class Producer(threading.Thread):
    """Builds bodies from the schedule into a bounded deque, ahead of the dispatcher."""

    def __init__(self, schedule: Iterable[Scheduled], builder: PromptBuilder, spec: BodySpec,
                 renderer: TextRenderer | None, lookahead: int,
                 default_output_tokens: int) -> None:
        super().__init__(name="llmtraces-replay-producer", daemon=True)
        self.schedule, self.builder, self.spec, self.renderer = schedule, builder, spec, renderer
        #: bodies built ahead at most; max_tokens of a request whose trace gives no output.
        self.lookahead, self.default_output_tokens = lookahead, default_output_tokens
        self.items: collections.deque[Item] = collections.deque()
        #: set by :meth:`take` once the deque is down to ``low``: a full producer then wakes
        #: to refill it in one go, rather than polling after every request the loop takes
        self.room = threading.Event()
        self.low = lookahead // 2
        self.done = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.count = 0

    def run(self) -> None:
        """Build items until the schedule ends, at most ``lookahead`` ahead; keep an error."""
        try:
            for s in self.schedule:
                while len(self.items) >= self.lookahead and not self.stop.is_set():
                    self.room.clear()
                    if len(self.items) > self.low:  # else take() set it before the clear
                        self.room.wait(0.25)
                if self.stop.is_set():
                    return
                self.items.append(self._item(s.due_s, s.request))
                self.count += 1
                time.sleep(0)  # give the GIL back to the dispatcher after each body
        except BaseException as exc:  # handed to the dispatcher, which ends the run
            self.error = exc
        finally:
            self.done.set()

    def halt(self) -> None:
        """Stop building (the thread ends soon after)."""
        self.stop.set()
        self.room.set()

    def take(self) -> Item | None:
        """The next item, if one is ready (called from the dispatcher's thread)."""
        if not self.items:
            return None
        item = self.items.popleft()
        if len(self.items) <= self.low and not self.room.is_set():
            self.room.set()
        return item

    def _item(self, due: float, req: Any) -> Item:
        """The item of one scheduled request: its body, or why it cannot be sent."""
        out = req.output_tokens
        max_tokens = self.default_output_tokens if out is None else max(1, int(out))
        prompt = self.builder.build(req, max_tokens)
        item = Item(due, req.request_id, req.source_row, req.session_id, req.turn,
                    req.parent_request_id, len(prompt.units), max_tokens, None)
        vocab = self.spec.vocab_size
        if prompt.own_ids and vocab is not None and prompt.units and \
                max(prompt.units) >= vocab:
            item.detail = (f"the trace's token id {max(prompt.units)} is outside the "
                           f"vocabulary (--vocab-size {vocab})")
            return item
        item.body = encode(make_body(self.spec, prompt, max_tokens, self.renderer))
        return item
