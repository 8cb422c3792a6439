"""A redis-server of a test's own, on a free loopback port, persisting to an append-only file in its own dir.

For tests (and bench/) that stop Redis and start it again from what it wrote to disk, which the shared
test Redis must never be put through.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis as redis_lib


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None):
        self.dir, self.port = Path(directory), port or _free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start it (again), loading its append-only file if it has one; returns once it answers PING."""
        # appendfsync always: what Redis acknowledged is on disk, so a SIGKILL loses nothing (deploy/ does the same).
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        client = redis_lib.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return self
            except redis_lib.RedisError:
                assert self.proc.poll() is None, (self.dir / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL it, as when its pod or node dies: only the append-only file survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url)
