"""The README's quick start, run literally against a fake Packycode (issue 8's acceptance).

The README marks its quick-start code blocks with ``<!-- quickstart: NAME -->``:

* ``serve`` — the start command of a Codex CLI user (``packyd serve --packycode``);
* ``claude`` — Claude Code pointed at packyd (``export ANTHROPIC_*`` and ``claude -p``);
* ``check`` — the self-check (``/healthz``, ``check-config``, ``--online``, ``status``, and a
  first ``/v1/messages`` request with curl).

Each block runs as written, with ``bash -e``: ``serve`` in the background from the user's home
directory, then ``claude`` and ``check`` in one shell, as in a second terminal. Only the
environment is the test's: ``HOME`` is a temporary directory holding Packycode's documented
Codex CLI setup (``~/.codex/config.toml`` + ``auth.json``) whose ``base_url`` points at the fake
Packycode (``python -m tests.support.fake_packycode``, a real HTTP server), and ``PATH`` has the
project's ``.venv/bin`` (what ``source .venv/bin/activate`` gives) and the pinned Claude Code CLI
that ``bash scripts/test`` installs. The test passes when Claude Code and curl both print the
fake's answer, every check command exits 0, and the fake saw the key from ``auth.json``.

The blocks use the fixed address ``127.0.0.1:8317``, which another packyd on this machine may
hold. So the run happens in a private network namespace (``unshare -rnm``: new user, network
and mount namespaces, no privileges needed where unprivileged user namespaces are allowed),
where that port is always free and an installed ``/etc/packyd/config.yaml`` is hidden under an
empty tmpfs, so the run sees what a user without the Debian package sees. Without ``unshare``
the test runs on the host when the port is free and no ``/etc/packyd/config.yaml`` exists,
and is skipped (with the reason) otherwise.

Start point C (``bash scripts/serve``) installs from PyPI into the shared ``.venv``; it is
not run here, because reinstalling the package under the feet of a running test suite is
unsafe. It execs ``packyd serve "$@"``, which is what block ``serve`` runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ADDRESS = ("127.0.0.1", 8317)
ANSWER = "Hi from the fake Packycode, via packyd."
PACKY_KEY = "sk-quickstart-test-key-7e1f"
CLAUDE_BIN = ROOT / "tests" / "e2e" / "node_modules" / ".bin"
_BLOCK = re.compile(r"<!-- quickstart: (\w+) -->\s*\n```(?:sh|bash)\n(.*?)```", re.DOTALL)


def quickstart_blocks(text: str | None = None) -> dict[str, str]:
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks: dict[str, str] = {}
    for name, body in _BLOCK.findall(text):
        assert name not in blocks, f"README has two quickstart blocks named {name}"
        blocks[name] = body
    return blocks


def test_readme_marks_the_quickstart_blocks() -> None:
    blocks = quickstart_blocks()
    assert set(blocks) == {"serve", "claude", "check"}, blocks.keys()
    assert blocks["serve"].split("#")[0].strip() == "packyd serve --packycode"
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:8317" in blocks["claude"]
    assert "ANTHROPIC_AUTH_TOKEN=" in blocks["claude"]
    assert "/v1/messages" in blocks["check"] and "/healthz" in blocks["check"]
    for command in ("packyd check-config", "packyd check-config --online", "packyd status"):
        assert re.search(rf"^{re.escape(command)}(\s|$)", blocks["check"], re.MULTILINE), command


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-rnm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _port_free() -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(ADDRESS)
        except OSError:
            return False
    return True


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    if not (CLAUDE_BIN / "claude").exists():
        pytest.fail(f"Claude Code is not installed at {CLAUDE_BIN}; install it with: bash tests/e2e/install-claude-code "
                    "(bash scripts/test does)", pytrace=False)
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed; the README's self-check uses it")
    driver = [sys.executable, "-m", "tests.test_docs_quickstart", str(tmp_path)]
    if _can_unshare():
        command = ["unshare", "-rnm", *driver, "--private-network"]
    elif _port_free() and not Path("/etc/packyd/config.yaml").exists():
        command = driver
    else:
        pytest.skip("cannot run the literal quick start: no private network namespace (unshare -rnm) and "
                    "127.0.0.1:8317 is in use or /etc/packyd/config.yaml exists")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"quick start failed:\n{result.stdout}\n{result.stderr}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["answers"] >= 2, result.stdout
    assert summary["upstream_keys"] == [f"Bearer {PACKY_KEY}"], summary


# --- the driver: runs inside the namespace (or on the host), prints a JSON summary line -------


def _loopback_up() -> None:
    """``ip link set lo up`` without needing iproute2 (a new network namespace starts with lo down)."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, siocgifflags, request)[:18])[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def _hide_installed_config() -> None:
    if Path("/etc/packyd/config.yaml").exists():
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/etc/packyd"], check=True)


def _start_fake(work: Path) -> tuple[subprocess.Popen[str], str]:
    from tests.fixtures.streams import text_stream
    from tests.support.fake_packycode import sse_reply

    script = work / "fake-script.json"
    script.write_text(json.dumps({"replies": [], "default": sse_reply(text_stream(ANSWER)).to_json()}))
    fake = subprocess.Popen([sys.executable, "-m", "tests.support.fake_packycode", "--port", "0", "--script",
                             str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert fake.stdout is not None
    line = fake.stdout.readline()
    assert line.startswith("listening on "), line
    return fake, line.split()[-1]


def _codex_home(home: Path, base_url: str) -> None:
    """Packycode's documented Codex CLI setup (reference/codex-cli.md §6), pointing at the fake."""
    codex = home / ".codex"
    codex.mkdir(parents=True)
    (codex / "config.toml").write_text(
        'model_provider = "packycode"\n'
        'model = "gpt-5"\n'
        'model_reasoning_effort = "high"\n'
        "disable_response_storage = true\n"
        "\n"
        "[model_providers.packycode]\n"
        'name = "packycode"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
        "requires_openai_auth = true\n")
    (codex / "auth.json").write_text(json.dumps({"OPENAI_API_KEY": PACKY_KEY}))
    os.chmod(codex / "auth.json", 0o600)


def _wait_healthy(daemon: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"`packyd serve --packycode` exited with {daemon.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://{ADDRESS[0]}:{ADDRESS[1]}/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"packyd did not answer /healthz within {timeout}s:\n{log.read_text()}")


def _drive(work: Path, private_network: bool) -> dict[str, object]:
    import httpx

    if private_network:
        _loopback_up()
        _hide_installed_config()
    blocks = quickstart_blocks()
    fake, base_url = _start_fake(work)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        home = work / "home"
        _codex_home(home, base_url)
        env = {
            "HOME": str(home),
            "PATH": os.pathsep.join([str(ROOT / ".venv" / "bin"), str(CLAUDE_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
        }
        serve_log = work / "serve.log"
        with open(serve_log, "wb") as log:
            daemon = subprocess.Popen(["bash", "-e", "-c", blocks["serve"]], cwd=home, env=env, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_healthy(daemon, serve_log)
        # A second terminal: Claude Code, then the self-check, in one shell (the exports carry over).
        second = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", blocks["claude"] + blocks["check"]],
                                cwd=home, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=240)
        output = second.stdout + second.stderr
        assert second.returncode == 0, f"exit {second.returncode}:\n{output}\n--- packyd:\n{serve_log.read_text()}"
        for expected in ('"packycode":"usable"', "valid. Packycode is usable.", "online check: accepted",
                         "codex-cli:auth.json", '"type":"message"'):
            assert expected in output, f"{expected!r} missing from:\n{output}"
        recorded = httpx.get(base_url.removesuffix("/v1") + "/_fake/requests", timeout=5, trust_env=False).json()
        keys = sorted({r["headers"].get("authorization", "") for r in recorded if r["path"].endswith("/responses")})
        return {"answers": output.count(ANSWER), "upstream_keys": keys}
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(5)
        fake.terminate()
        fake.wait(10)


if __name__ == "__main__":
    work_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="packyd-quickstart-"))
    print(json.dumps(_drive(work_dir, "--private-network" in sys.argv[2:])))
