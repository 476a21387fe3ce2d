"""A reply's text as the person hears it: the responder's words, and filler phrases said while
the responder waits (for its first token, for a tool call).

The responder's stream is read by a task of its own, so a filler can be said while that stream
is stalled. A filler goes only where a sentence could begin (before any words, or after a
sentence's end): one decided just as the responder's words began is dropped rather than cut into
them. Fillers are spoken like any text, but they are not the model's words: `unfilled()` takes
them out of what the history records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

_END = ("end", "")
_SENTENCE_ENDS = (".", "!", "?", ":", ";", "…")


class Narration:
    """The responder's deltas, with fillers interjected; each piece says whether it is one."""

    def __init__(self, texts: AsyncIterator[str]) -> None:
        self._texts = texts
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._failure: Exception | None = None
        self._pump: asyncio.Task[None] | None = None
        self._said = ""  # every piece so far (the reply's text, as its stream gets it)
        self.fillers: list[tuple[int, int]] = []  # spans of `_said` that are fillers

    def interject(self, phrase: str) -> None:
        """Say `phrase` next, between two of the responder's deltas."""
        self._queue.put_nowait(("filler", phrase))

    async def pieces(self) -> AsyncGenerator[tuple[str, bool], None]:
        """(text, is a filler) until the responder ends; its failure is raised here."""
        self._pump = asyncio.create_task(self._run())
        try:
            while True:
                kind, text = await self._queue.get()
                if kind == "end":
                    if self._failure is not None:
                        raise self._failure
                    return
                if kind == "filler":
                    if self._said.rstrip()[-1:] not in ("", *_SENTENCE_ENDS):
                        continue
                    # A sentence of its own: spaced from what came before, ended by a space
                    # so the segmenter releases it at once.
                    space = "" if not self._said or self._said[-1].isspace() else " "
                    text = f"{space}{text} "
                    self.fillers.append((len(self._said), len(self._said) + len(text)))
                self._said += text
                yield text, kind == "filler"
        finally:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def unfilled(self, said: str) -> str:
        """`said` (a prefix of the reply's text) without the fillers, spaces normalised."""
        kept, at = [], 0
        for start, end in self.fillers:
            if start >= len(said):
                break
            kept.append(said[at:start])
            at = end
        kept.append(said[at:])
        return " ".join(" ".join(kept).split())

    async def _run(self) -> None:
        try:
            async for text in self._texts:
                if text:
                    self._queue.put_nowait(("text", text))
        except Exception as error:
            self._failure = error
        finally:
            close = getattr(self._texts, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
            self._queue.put_nowait(_END)
