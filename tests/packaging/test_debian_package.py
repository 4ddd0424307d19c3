"""The Debian package, for real: build, lint, install, run, reload, upgrade, purge.

Runs as root with apt (CI runs ``packaging/deb/install-build-deps`` first). Nothing is
mocked: the .deb is built by ``packaging/deb/build``, installed with ``apt-get install``,
and the daemon is started from the installed unit's ``ExecStart=`` command line as the
unit's ``User=``, with a notify socket of our own standing in for systemd. Everything
the test adds to the machine (the package, its user and group, Debian dependencies it
pulled in) is removed at the end.

Steps depend on each other and run in file order, sharing one module-scoped fixture.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "deb" / "build"
UNIT_SOURCE = REPO / "packaging" / "systemd" / "packyd.service"
UNIT = Path("/lib/systemd/system/packyd.service")
CONFIG = Path("/etc/packyd/config.yaml")
# Left on the machine while the test has packyd installed, so a run that died half-way
# is recognised (and cleaned up) by the next one instead of being mistaken for a real
# installation.
MARKER = Path("/var/lib/packyd-packaging-test")
# Two runs at once (several people's pytest on one machine) would fight over dpkg and
# over each other's installation: the second one waits.
LOCK = Path("/run/lock/packyd-packaging-test.lock")
TOOLS = ["apt-get", "dpkg", "dpkg-deb", "dpkg-statoverride", "lintian", "systemd-analyze",
         "runuser", "deluser", "delgroup", "man"]
SYSTEMD_RUNNING = Path("/run/systemd/system").is_dir()
NO_SYSTEMD_NOTE = (
    "NOTE: systemd is not PID 1 on this machine (no /run/systemd/system), so `systemctl "
    "start/reload/stop packyd` and the postinst's start/restart cannot run here. The test "
    "exercises the installed unit's ExecStart= and ExecReload= command lines directly, as "
    "its User=, with its own NOTIFY_SOCKET standing in for systemd.")


def run(*argv: str, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=timeout, env=kwargs.pop("env", env), **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{shlex.join(argv)} exited {result.returncode}\n"
                    f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def installed_packages() -> set[str]:
    out = run("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n").stdout
    return {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``[Service]`` settings of a unit file, every assignment kept in order."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def command_line(value: str, main_pid: int | None = None) -> list[str]:
    """An Exec*= value as argv: special prefixes dropped, $MAINPID substituted."""
    value = value.lstrip("-@:+!")
    if main_pid is not None:
        value = value.replace("${MAINPID}", str(main_pid)).replace("$MAINPID", str(main_pid))
    assert "$" not in value, f"unexpected variable in {value!r}"
    return shlex.split(value)


@dataclass
class Machine:
    """What the test added to the machine, and the artefacts it built."""
    tmp: Path
    deb: Path | None = None
    upgrade_deb: Path | None = None
    version: str = ""
    packages_before: set[str] = field(default_factory=set)
    user_existed: bool = False
    group_existed: bool = False
    port: int = 0


def packyd_status() -> str:
    """dpkg's status of packyd: "" when dpkg never heard of it, else installed, config-files, ..."""
    return run("dpkg-query", "-W", "-f", "${db:Status-Status}", "packyd", check=False).stdout.strip()


def purge_packyd() -> None:
    if packyd_status() not in ("", "not-installed"):
        run("dpkg", "--purge", "packyd")


def note(request: pytest.FixtureRequest, text: str) -> None:
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(text, yellow=True, bold=True)
    else:
        print(text, file=sys.stderr)


@pytest.fixture(scope="module")
def machine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.fail("the packaging test installs a .deb and needs root (it runs in CI as root)")
    missing = [tool for tool in TOOLS if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `bash packaging/deb/install-build-deps` first")
    os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK, "w")
    deadline = time.monotonic() + 900
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail(f"another packaging test run has held {LOCK} for 15 minutes")
            time.sleep(1)

    if packyd_status() not in ("", "not-installed") and not MARKER.exists():
        pytest.fail(f"packyd is on this machine ({packyd_status()}) and not by this test, which would "
                    "purge it. Remove it first (apt-get purge packyd) or run the test elsewhere.")
    if MARKER.exists():  # leftovers of a run that died: clean them up first
        purge_packyd()
        MARKER.unlink()

    if not SYSTEMD_RUNNING:
        note(request, NO_SYSTEMD_NOTE)

    state = Machine(tmp=tmp_path_factory.mktemp("deb"))
    state.packages_before = installed_packages()
    state.user_existed = _exists(pwd.getpwnam, "packyd")
    state.group_existed = _exists(grp.getgrnam, "packyd")
    try:
        yield state
    finally:  # every step runs even if one fails; nothing here raises
        if packyd_status() not in ("", "not-installed"):
            run("dpkg", "--purge", "packyd", check=False)
        MARKER.unlink(missing_ok=True)
        if not state.user_existed and _exists(pwd.getpwnam, "packyd"):
            run("deluser", "--quiet", "--system", "packyd", check=False)
        if not state.group_existed and _exists(grp.getgrnam, "packyd"):
            run("delgroup", "--quiet", "--system", "packyd", check=False)
        # Debian dependencies that apt pulled in for packyd (none when install-build-deps ran).
        added = sorted(installed_packages() - state.packages_before)
        if added:
            run("apt-get", "purge", "-y", "-q", *added, check=False)
        lock.close()


def _exists(lookup, name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def build(out: Path, version: str | None = None) -> Path:
    env = {**os.environ, "PACKYD_DEB_OUTDIR": str(out)}
    env.pop("SOURCE_DATE_EPOCH", None)
    if version:
        env["PACKYD_DEB_VERSION"] = version
    result = run("bash", str(BUILD), env=env)
    debs = sorted(out.glob("packyd_*_all.deb"))
    assert len(debs) == 1, f"expected one .deb in {out}: {debs}\n{result.stdout}"
    return debs[0]


# --- build -------------------------------------------------------------------------------

def test_build_is_reproducible(machine: Machine) -> None:
    first = build(machine.tmp / "first")
    second = build(machine.tmp / "second")
    assert first.name == second.name
    assert re.fullmatch(r"packyd_[0-9][^_]*_all\.deb", first.name)
    assert sha256(first) == sha256(second), "two builds of the same checkout differ"
    machine.deb = first
    machine.version = run("dpkg-deb", "--field", str(first), "Version").stdout.strip()

    listing = run("dpkg-deb", "--contents", str(first)).stdout
    assert not re.search(r"\.pyc$|__pycache__|\.so(\.\d+)*$", listing, re.M), "bytecode or binaries shipped"
    owners = {line.split()[1] for line in listing.splitlines()}
    assert owners == {"root/root"}, owners


def test_lintian_is_clean(machine: Machine) -> None:
    assert machine.deb, "build failed"
    result = run("lintian", "--fail-on", "error,warning", str(machine.deb), check=False)
    tags = [line for line in result.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert result.returncode == 0 and not tags, result.stdout + result.stderr


# --- install ---------------------------------------------------------------------------------

def test_install(machine: Machine) -> None:
    assert machine.deb, "build failed"
    MARKER.write_text("packyd installed by tests/packaging; safe to purge\n")
    run("apt-get", "install", "-y", "-q", str(machine.deb))
    status = run("dpkg-query", "-W", "-f", "${Version} ${db:Status-Status}", "packyd").stdout
    assert status == f"{machine.version} installed"

    assert run("packyd", "version").stdout.strip() == f"packyd {machine.version.split('-')[0]}"
    assert run("packyd", "--version").stdout.strip().startswith("packyd ")

    user = pwd.getpwnam("packyd")
    assert grp.getgrgid(user.pw_gid).gr_name == "packyd"
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false")
    assert user.pw_uid < 1000, "not a system user"


def test_file_modes_and_ownership(machine: Machine) -> None:
    def mode(path: str) -> str:
        return run("stat", "-c", "%a %U:%G", path).stdout.strip()

    assert mode("/etc/packyd") == "750 root:packyd"
    assert mode("/etc/packyd/config.yaml") == "640 root:packyd"
    assert mode("/usr/bin/packyd") == "755 root:root"
    assert mode(str(UNIT)) == "644 root:root"
    overrides = run("dpkg-statoverride", "--list").stdout.splitlines()
    assert "root packyd 640 /etc/packyd/config.yaml" in overrides
    assert "root packyd 750 /etc/packyd" in overrides
    assert Path("/usr/bin/packyd").read_text().startswith("#!/usr/bin/python3 -I\n")
    assert UNIT.read_bytes() == UNIT_SOURCE.read_bytes()
    assert "/etc/packyd/config.yaml" in run("dpkg-query", "-W", "-f", "${Conffiles}", "packyd").stdout
    # postinst compiled the bytecode that the package does not ship
    assert list(Path("/usr/lib/packyd/packyd").glob("__pycache__/cli.cpython-*.pyc"))


def test_check_config_as_service_user(machine: Machine) -> None:
    result = run("runuser", "-u", "packyd", "--", "packyd", "check-config", str(CONFIG))
    assert "valid" in result.stdout
    # Packycode is off until a key is configured, so the service can start without one.
    assert re.search(r"^packycode:\n(?:[ #].*\n)*?  enabled: false", CONFIG.read_text(), re.M)


def test_unit_verifies_and_is_hardened(machine: Machine) -> None:
    verify = run("systemd-analyze", "verify", str(UNIT), check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = run("systemd-analyze", "security", "--offline=true", str(UNIT)).stdout
    level = re.search(r"Overall exposure level for packyd\.service: ([\d.]+) (\w+)", security)
    assert level, security
    assert level.group(2) in {"SAFE", "OK"}, level.group(0)
    print(level.group(0))


def test_enabled_for_boot(machine: Machine) -> None:
    wants = Path("/etc/systemd/system/multi-user.target.wants/packyd.service")
    assert wants.is_symlink() and os.readlink(wants) == str(UNIT)
    if SYSTEMD_RUNNING:  # not exercised on the CI machine (no systemd as PID 1)
        assert run("systemctl", "is-active", "packyd", check=False).stdout.strip() == "active"
        run("systemctl", "reload", "packyd")
        run("systemctl", "stop", "packyd")


# --- the daemon, started from the unit's command lines ------------------------------------------

class ServiceSandbox:
    """What systemd would hand the service: a NOTIFY_SOCKET and a $CREDENTIALS_DIRECTORY.

    Lives in its own directory under /tmp, not under pytest's tmp_path, whose 0700 root
    parents the service user could not traverse.
    """

    KEY = "sk-packaging-test-not-a-real-key"

    def __init__(self, owner: pwd.struct_passwd) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="packyd-service-"))
        self.directory.chmod(0o755)
        self.notify_path = self.directory / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.notify_path))
        os.chown(self.notify_path, owner.pw_uid, owner.pw_gid)  # the daemon must be able to send
        # Like systemd's /run/credentials/packyd.service: readable by the service user only.
        self.credentials = self.directory / "credentials"
        self.credentials.mkdir()
        (self.credentials / "packycode-api-key").write_text(self.KEY + "\n")
        for path, mode in ((self.credentials / "packycode-api-key", 0o400), (self.credentials, 0o500)):
            os.chown(path, owner.pw_uid, owner.pw_gid)
            path.chmod(mode)
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> dict[str, str]:
        """The next sd_notify message carrying ``key`` (other messages are kept in self.messages)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                datagram = self.sock.recv(65536).decode()
            except TimeoutError:
                if process.poll() is not None:
                    pytest.fail(f"packyd exited {process.returncode} while we waited for {key}=\n"
                                f"{log.read_text()[-4000:]}")
                continue
            message = dict(line.split("=", 1) for line in datagram.splitlines() if "=" in line)
            self.messages.append(message)
            if key in message:
                return message
        pytest.fail(f"no {key}= within {timeout}s; got {self.messages}\n{log.read_text()[-4000:]}")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def seconds(value: str) -> float:
    assert re.fullmatch(r"\d+s?", value), f"unsupported time span {value!r}"
    return float(value.rstrip("s"))


def healthz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def test_daemon_start_reload_stop(machine: Machine) -> None:
    settings = unit_settings(UNIT)
    assert settings["Type"] == ["notify"]
    assert settings["LoadCredential"] == ["packycode-api-key"]
    user = pwd.getpwnam(settings["User"][0])
    group = grp.getgrnam(settings["Group"][0])

    # The admin's local edits (the upgrade test checks they survive): a port nobody else
    # uses, and Packycode switched on now that a key is provided as a systemd credential.
    machine.port = free_port()
    edited, ports = re.subn(r"^port: *\d+", f"port: {machine.port}", CONFIG.read_text(), flags=re.M)
    edited, switches = re.subn(r"^(packycode:\n(?:[ #].*\n)*?  enabled:) false", r"\1 true", edited, flags=re.M)
    assert (ports, switches) == (1, 1), "no top-level port: or packycode.enabled: false in config.yaml"
    CONFIG.write_text(edited)  # in place: owner and mode stay

    run_as = dict(user=user.pw_uid, group=group.gr_gid, extra_groups=[], cwd="/",
                  umask=int(settings.get("UMask", ["0022"])[0], 8))
    sandbox = ServiceSandbox(user)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name,
           "NOTIFY_SOCKET": str(sandbox.notify_path), "CREDENTIALS_DIRECTORY": str(sandbox.credentials),
           "WATCHDOG_USEC": "2000000"}
    log = machine.tmp / "daemon.log"
    (start,) = settings["ExecStart"]
    started = time.monotonic()
    with open(log, "w") as output:
        daemon = subprocess.Popen(command_line(start), env=env, stdout=output, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, **run_as)
    try:
        env["MAINPID"] = str(daemon.pid)
        ready = sandbox.wait_for("READY", daemon, log, timeout=seconds(settings["TimeoutStartSec"][0]))
        print(f"\nREADY=1 after {time.monotonic() - started:.2f}s: {ready.get('STATUS', '')}")
        health = healthz(machine.port)
        assert health.get("packycode") == "usable", f"key from $CREDENTIALS_DIRECTORY not used: {health}"
        assert ServiceSandbox.KEY not in log.read_text(), "the key was logged"
        sandbox.wait_for("WATCHDOG", daemon, log, timeout=5)

        reload_lines = [command_line(line, daemon.pid) for line in settings["ExecReload"]]
        assert reload_lines[0][:2] == ["/usr/bin/packyd", "check-config"], reload_lines
        assert reload_lines[-1][-2:] == ["-HUP", str(daemon.pid)], reload_lines

        # A broken file: the first ExecReload line fails, so systemd would not send SIGHUP.
        CONFIG.write_text(edited + "no-such-key: 1\n")
        broken = run(*reload_lines[0], env=env, check=False, **run_as)
        assert broken.returncode == 1, broken
        assert "no-such-key" in broken.stdout + broken.stderr
        CONFIG.write_text(edited)

        for argv in reload_lines:
            run(*argv, env=env, **run_as)
        sandbox.wait_for("RELOADING", daemon, log, timeout=10)
        sandbox.wait_for("READY", daemon, log, timeout=30)
        assert healthz(machine.port).get("packycode") == "usable"

        stop_timeout = seconds(settings["TimeoutStopSec"][0])
        daemon.send_signal(signal.SIGTERM)
        sandbox.wait_for("STOPPING", daemon, log, timeout=10)
        try:
            code = daemon.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"packyd still running {stop_timeout}s (TimeoutStopSec) after SIGTERM and STOPPING=1; "
                        f"systemd would SIGKILL it\n{log.read_text()[-4000:]}")
        assert code == 0, log.read_text()[-4000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        sandbox.close()
        CONFIG.write_text(edited)


# --- upgrade and purge ----------------------------------------------------------------------

def test_upgrade_keeps_edited_config(machine: Machine) -> None:
    assert machine.port, "the daemon test did not edit the config"
    before = CONFIG.read_bytes()
    assert f"port: {machine.port}".encode() in before
    newer = f"{machine.version}+test1"
    machine.upgrade_deb = build(machine.tmp / "upgrade", version=newer)
    assert run("dpkg", "--compare-versions", newer, "gt", machine.version, check=False).returncode == 0

    run("apt-get", "install", "-y", "-q", str(machine.upgrade_deb))
    status = run("dpkg-query", "-W", "-f", "${Version} ${db:Status-Status}", "packyd").stdout
    assert status == f"{newer} installed"
    assert CONFIG.read_bytes() == before, "the upgrade changed the locally edited config"
    assert run("stat", "-c", "%a %U:%G", str(CONFIG)).stdout.strip() == "640 root:packyd"
    assert not list(Path("/etc/packyd").glob("config.yaml.dpkg-*"))
    run("runuser", "-u", "packyd", "--", "packyd", "check-config", str(CONFIG))
    if SYSTEMD_RUNNING:
        assert run("systemctl", "is-active", "packyd", check=False).stdout.strip() == "active"


def test_purge_leaves_nothing(machine: Machine) -> None:
    run("apt-get", "purge", "-y", "-q", "packyd")
    MARKER.unlink(missing_ok=True)
    assert packyd_status() in ("", "not-installed")
    leftovers = [path for path in (
        "/etc/packyd", "/usr/lib/packyd", "/usr/bin/packyd", str(UNIT), "/var/lib/packyd",
        "/usr/share/doc/packyd", "/usr/share/man/man8/packyd.8.gz", "/usr/share/lintian/overrides/packyd",
        "/etc/systemd/system/packyd.service",
        "/etc/systemd/system/multi-user.target.wants/packyd.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/packyd.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/packyd.service",
        "/var/lib/systemd/deb-systemd-helper-masked/packyd.service",
    ) if os.path.lexists(path)]
    assert not leftovers, leftovers
    overrides = [line for line in run("dpkg-statoverride", "--list").stdout.splitlines() if "/etc/packyd" in line]
    assert not overrides, overrides
