"""The processes a benchmark run starts (fake upstream, packyd) and what /proc says about them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["ROOT", "Upstream", "Floor", "Packyd", "cpu_seconds", "rss_kib", "write_config"]

ROOT = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACKYD_", "NOTIFY_SOCKET", "CODEX_HOME"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Upstream:
    """``python -m bench.upstream`` on a free port."""

    module = "bench.upstream"

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, *args], cwd=ROOT, env=_env(),
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()  # type: ignore[union-attr]
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"{self.module} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class Floor(Upstream):
    """``python -m bench.floor``: the stack without packyd's code (see bench/floor.py)."""

    module = "bench.floor"

    def __init__(self, upstream_port: int) -> None:
        super().__init__("--upstream-port", str(upstream_port))


def write_config(directory: Path, port: int, upstream_port: int, log_level: str = "info") -> Path:
    path = directory / "config.yaml"
    path.write_text(f"""\
host: 127.0.0.1
port: {port}
api-keys: ["bench-key"]
log-level: {log_level}
max-upstream-streams: 4096
packycode:
  enabled: true
  base-url: http://127.0.0.1:{upstream_port}/v1
  credentials:
    openai-api-key: sk-bench-0000000000000000
  retries: {{max-attempts: 1}}
""")
    return path


class Packyd:
    """``python -m packyd serve --config …`` as systemd would run it, with a notify socket."""

    def __init__(self, upstream_port: int, *, log_level: str = "info", launcher: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="packyd-bench-"))
        self.port = _free_port()
        self.config = write_config(self.dir, self.port, upstream_port, log_level)
        self.notify_path = str(self.dir / "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        env = _env()
        env.update({"NOTIFY_SOCKET": self.notify_path, "HOME": str(self.dir)})
        self.log = open(self.dir / "packyd.log", "wb")
        self.started = time.monotonic()
        program = [str(Path(launcher).resolve())] if launcher else ["-m", "packyd"]
        self.proc = subprocess.Popen([sys.executable, *program, "serve", "--config", str(self.config)],
                                     cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.ready_after = self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> float:
        deadline = self.started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("packyd did not become ready:\n" + (self.dir / "packyd.log").read_text())
            self.notify.settimeout(remaining)
            try:
                data = self.notify.recv(65536)
            except socket.timeout:
                continue
            if b"READY=1" in data.split(b"\n"):
                return time.monotonic() - self.started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        self.notify.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
