"""One connection's acks, sent in order, each once its frame is committed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
from typing import Callable

from tracer.forward import wire


class Acks:
    """The connection goes on reading and decoding while earlier frames commit, at most DEPTH
    frames ahead, so an agent with several chunks in flight keeps the writer busy. The first
    frame that fails (bad input found by the decoder, a store error) stops the acks and calls
    ON_ERROR at once (while `interrupt` is set: the connection is still reading), which closes
    the connection; the error is raised once, by add() or finish(). Any exception counts: one
    that escaped here would leave the frames behind it without an answer."""

    def __init__(self, writer: asyncio.StreamWriter, depth: int, on_error: Callable[[], object]) -> None:
        self.writer = writer
        self.queue: asyncio.Queue = asyncio.Queue(depth)
        self.error: BaseException | None = None
        self._on_error = on_error
        self.interrupt = True
        self._raised = False
        self.task = asyncio.ensure_future(self._run())

    async def add(self, committed: concurrent.futures.Future) -> None:
        """COMMITTED's result is the chunk to ack (None: the sender wants no ack)."""
        self._raise()
        await self.queue.put(committed)

    async def finish(self) -> None:
        await self.queue.put(None)
        await self.task
        self._raise()

    def cancel(self) -> None:
        self.task.cancel()

    def _raise(self) -> None:
        if self.error is not None and not self._raised:
            self._raised = True
            raise self.error

    async def _run(self) -> None:
        while (committed := await self.queue.get()) is not None:
            try:
                chunk = await asyncio.wrap_future(committed)
            except Exception as e:  # noqa: BLE001 - see the class
                if self.error is None:
                    self.error = e
                    if self.interrupt:
                        self._on_error()
                continue
            if chunk is not None and self.error is None:
                try:
                    self.writer.write(wire.ack(chunk))
                    await self.writer.drain()
                except (ConnectionError, ssl.SSLError) as e:  # the agent went away: it resends
                    self.error = e
