"""Run packyd as a subprocess, the way systemd runs it, and watch what it tells systemd.

A real ``AF_UNIX`` datagram socket stands in for systemd's notify socket; its messages are
read with a timeout, so a daemon that never reports readiness fails the test instead of
hanging it. stderr goes to a file that tests scan (for privacy canaries, problems, audit
lines).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

__all__ = ["NotifySocket", "PackydProcess", "free_port", "ROOT"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NotifySocket:
    """A datagram socket at a temporary path that collects sd_notify messages."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="packyd-notify-")
        self.path = os.path.join(self.directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, value: str | None = None, timeout: float = 15.0) -> dict[str, str]:
        """Block until a message with ``key`` (and ``value``) arrives after those already seen."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {key}={value or '*'} from packyd within {timeout}s; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append(fields)
            if key in fields and (value is None or fields[key] == value):
                return fields

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.directory)
        except OSError:
            pass


class PackydProcess:
    """``python -m packyd <args>`` with NOTIFY_SOCKET set; use as a context manager."""

    def __init__(self, args: Iterable[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 notify: bool = True, home: str | Path | None = None) -> None:
        self.args = list(args)
        self.notify = NotifySocket() if notify else None
        self.log_path = Path(tempfile.mkstemp(prefix="packyd-stderr-", suffix=".log")[1])
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="packyd-home-"))
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(("PACKYD_", "NOTIFY_SOCKET", "WATCHDOG_", "CODEX_HOME", "CREDENTIALS_"))}
        base.update({"HOME": str(self.home), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
        if self.notify:
            base["NOTIFY_SOCKET"] = self.notify.path
        base.update(env or {})
        self.env = base
        self.cwd = str(cwd or self.home)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "PackydProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "packyd", *self.args], env=self.env, cwd=self.cwd,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 20.0) -> dict[str, str]:
        assert self.notify is not None
        try:
            return self.notify.wait_for("READY", "1", timeout)
        except TimeoutError:
            raise AssertionError(f"packyd did not become ready; its log:\n{self.log()}") from None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if hasattr(self, "_log"):
            self._log.close()
        if self.notify:
            self.notify.close()

    def __enter__(self) -> "PackydProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
