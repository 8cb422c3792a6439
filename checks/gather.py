"""Fetch each declared input once, concurrently, within the run's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from checks.cluster import DEFAULT_CONCURRENCY, Cluster
from checks.errors import BadPayload, ClusterError, RequestTimeout


class Gatherer:
    def __init__(self, cluster: Cluster, *, deadline: float, concurrency: int = DEFAULT_CONCURRENCY,
                 all_pods: bool = False):
        self.cluster = cluster
        self.all_pods = all_pods  # inputs that sample pods (sidecar logs) read every one instead
        self.deadline = deadline  # time.monotonic() by which every fetch must be done
        self.requests = 0
        self.finished: dict[Any, float] = {}  # when each input was in hand (or failed)
        self._tasks: dict[Any, asyncio.Task] = {}
        self._slots = asyncio.Semaphore(concurrency)

    async def call(self, fn: Callable, *args, **kwargs):
        """One client call (each request has its own timeout), at most ``concurrency`` at once."""
        async with self._slots:
            if self.deadline - time.monotonic() <= 0:
                raise RequestTimeout("the run's time budget ran out before this request was sent")
            self.requests += 1
            return await fn(*args, **kwargs)

    def get(self, key: Any) -> asyncio.Task:
        """The shared task fetching ``key``; awaiting it gives its value or raises ClusterError."""
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = asyncio.ensure_future(self._fetch(key))
        return task

    async def get_many(self, keys: Iterable[Any]) -> list[Any]:
        """Values of several inputs; a failed one stands as its ClusterError."""
        return await asyncio.gather(*(self.get(k) for k in keys), return_exceptions=True)

    async def _fetch(self, key: Any) -> Any:
        try:
            return await key.fetch(self)
        except ClusterError:
            raise
        except Exception as exc:  # a malformed answer that slipped past parsing
            raise BadPayload(f"could not read {key}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.finished[key] = time.monotonic()

    async def gather(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """Fetch all keys; each maps to its value or to the ClusterError that stopped it."""
        keys = list(dict.fromkeys(keys))
        tasks = [self.get(k) for k in keys]
        remaining = max(0.0, self.deadline - time.monotonic())
        if tasks:
            await asyncio.wait(tasks, timeout=remaining)
        values: dict[Any, Any] = {}
        for key, task in zip(keys, tasks, strict=True):
            if not task.done() or task.cancelled():  # left running: another input may still await it
                values[key] = RequestTimeout(f"{key} was not fetched within the run's time budget")
            elif task.exception() is not None:
                exc = task.exception()
                values[key] = exc if isinstance(exc, ClusterError) else BadPayload(str(exc))
            else:
                values[key] = task.result()
        return values
