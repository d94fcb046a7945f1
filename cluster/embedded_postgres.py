"""The embedded PostgreSQL of `tracemill up`: a real PostgreSQL 16 (the pgserver package) in a
data directory, reached over a unix socket. Start, stop and restart are explicit so that the
CLI stops what it started and tests can take the database away and bring it back."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pgserver
import psutil
from pgserver._commands import pg_ctl

__all__ = ["EmbeddedPostgres"]

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir).resolve()
        self._server: pgserver.PostgresServer | None = None

    def start(self) -> str:
        """Start (initialising the directory the first time) and return the connection URI."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._server is None:
            # cleanup_mode=None: we stop it ourselves, not an atexit hook in some other process.
            self._server = pgserver.get_server(self.data_dir, cleanup_mode=None)
        else:
            with self._server._lock:
                self._server.ensure_postgres_running()
        return self.uri

    @property
    def uri(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL was never started")
        return self._server.get_uri()

    def stop(self) -> None:
        """Fast shutdown: running transactions roll back, committed data stays."""
        if self._server is None:
            return
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user)
        except subprocess.CalledProcessError:
            log.info("embedded PostgreSQL in %s was not running", self.data_dir)

    def is_running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (ValueError, OSError):
            return False
        return psutil.pid_exists(pid)
