"""packyd benchmarks: every figure as packyd vs a direct connection to the same fake upstream.

    .venv/bin/python -m bench              # the whole run (about 2-3 minutes), table + JSON
    .venv/bin/python -m bench --quick      # fewer repetitions, for trying changes (~1 minute)
    .venv/bin/python -m bench --only ttfb,cpu

What runs: ``bench.upstream`` (a fast fake Packycode, asyncio), packyd as a subprocess started
the way systemd starts it (``python -m packyd serve --config …`` with a notify socket), and
this process as the client (``bench.client``). "direct" means the same client sends the
request packyd would have sent upstream (captured from the fake) straight to the fake. CPU and
memory come from /proc/PID/stat and /proc/PID/status. Results go to bench/results/*.json.
See docs/benchmarks.md for what each figure means and the latest numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import client as http
from .procs import ROOT, Packyd, Upstream, cpu_seconds, rss_kib
from .workload import claude_code_request, marker, small_request

PACKYD_HEADERS = {"content-type": "application/json", "x-api-key": "bench-key", "anthropic-version": "2023-06-01",
                  "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"}
DIRECT_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-0000000000000000",
                  "accept": "text/event-stream"}
MESSAGES = "/v1/messages?beta=true"
MARKER = re.compile(rb"\[bench [^\]]*\]")
RESPONSES = "/v1/responses"
PACKYD_END = (b"message_stop",)
DIRECT_END = (b"response.completed",)

TARGETS = {
    "ttfb_added_p50_ms": 1.0,
    "ttfb_added_p99_ms": 2.5,
    "cpu_us_per_event": 10.0,
    "cpu_share_500x50": 1.0,
    "idle_rss_mib": 60.0,
    "rss_per_stream_kib": 64.0,
    "disconnect_p99_ms": 50.0,
    "ready_s": 1.0,
}


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float], scale: float = 1.0) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50) * scale, "p99": pct(values, 99) * scale,
            "min": min(values) * scale if values else float("nan"), "max": max(values) * scale if values else float("nan")}


@dataclass
class Row:
    name: str
    packyd: float
    direct: float | None
    unit: str
    target: float | None = None
    added: float | None = None      # packyd - direct, when that is the figure that matters
    note: str = ""
    higher_is_worse: bool = True

    @property
    def ratio(self) -> float | None:
        if self.direct in (None, 0):
            return None
        return self.packyd / self.direct  # type: ignore[operator]

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        value = self.added if self.added is not None else self.packyd
        return "ok" if value <= self.target else "MISS"


@dataclass
class Bench:
    upstream: Upstream
    packyd: Packyd
    quick: bool
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- helpers

    async def control(self, path: str) -> bytes:
        conn = await http.connect(self.upstream.port)
        try:
            result = await conn.request("GET", path, keep_body=True)
        finally:
            conn.close()
        return bytes(result.body or b"")

    async def direct_body(self, anthropic_body: dict) -> bytes:
        """What packyd sends upstream for this request (sent once through packyd, read back from the fake).

        The capture runs with a short text scenario in place of the body's own marker (a stall
        would never end), which is then put back into the captured body.
        """
        payload = json.dumps(anthropic_body).encode()
        wanted = MARKER.search(payload).group(0)
        probe = marker(mode="text", n=1).encode()
        conn = await http.connect(self.packyd.port)
        try:
            result = await conn.request("POST", MESSAGES, payload.replace(wanted, probe), PACKYD_HEADERS)
        finally:
            conn.close()
        if result.status != 200:
            raise RuntimeError(f"packyd answered {result.status} while capturing the upstream body")
        captured = await self.control("/_bench/last")
        if captured.count(probe) != 1:
            raise RuntimeError("the scenario marker did not reach the upstream body intact")
        return captured.replace(probe, wanted)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = f" ({row.ratio:.2f}x)" if row.ratio is not None else ""
        print(f"  {row.name}: {row.packyd:.3f} {row.unit} vs {row.direct if row.direct is not None else '-'}{ratio}",
              flush=True)

    # ---------------------------------------------------------------- latency

    async def _latency(self, key: str, anthropic_body: dict, rounds: int, warmup: int) -> tuple[dict, dict]:
        payload = json.dumps(anthropic_body).encode()
        direct_payload = await self.direct_body(anthropic_body)
        pconn = await http.connect(self.packyd.port)
        dconn = await http.connect(self.upstream.port)
        samples: dict[str, dict[str, list[float]]] = {"packyd": {"ttfb": [], "total": []},
                                                      "direct": {"ttfb": [], "total": []}}
        errors = {"packyd": 0, "direct": 0}
        try:
            for i in range(warmup + rounds):
                # alternate the order so neither side always runs right after the other
                order = (("packyd", pconn, MESSAGES, payload, PACKYD_HEADERS, PACKYD_END),
                         ("direct", dconn, RESPONSES, direct_payload, DIRECT_HEADERS, DIRECT_END))
                for side, conn, path, body, headers, end in (order if i % 2 else order[::-1]):
                    result = await conn.request("POST", path, body, headers)
                    if result.status != 200 or not result.ended_with(*end):
                        errors[side] += 1
                        continue
                    if i >= warmup:
                        samples[side]["ttfb"].append(result.ttfb)
                        samples[side]["total"].append(result.total)
        finally:
            pconn.close()
            dconn.close()
        out = {side: {metric: summary(values, 1000) for metric, values in metrics.items()}
               for side, metrics in samples.items()}
        out["errors"] = errors
        out["request_bytes"] = {"packyd": len(payload), "direct": len(direct_payload)}
        self.raw[key] = out
        return out["packyd"], out["direct"]

    async def ttfb(self) -> None:
        print("added time to first byte, small streaming request, concurrency 1", flush=True)
        rounds = 150 if self.quick else 500
        p, d = await self._latency("ttfb_small", small_request(marker(mode="text", n=5)), rounds, 30)
        self.add(Row("TTFB small stream p50", p["ttfb"]["p50"], d["ttfb"]["p50"], "ms",
                     TARGETS["ttfb_added_p50_ms"], added=p["ttfb"]["p50"] - d["ttfb"]["p50"]))
        self.add(Row("TTFB small stream p99", p["ttfb"]["p99"], d["ttfb"]["p99"], "ms",
                     TARGETS["ttfb_added_p99_ms"], added=p["ttfb"]["p99"] - d["ttfb"]["p99"]))
        self.add(Row("small stream complete p50", p["total"]["p50"], d["total"]["p50"], "ms",
                     added=p["total"]["p50"] - d["total"]["p50"]))

    async def realistic(self) -> None:
        print("added latency, realistic Claude Code request (~90 KB, 24 tools)", flush=True)
        rounds = 60 if self.quick else 200
        body = claude_code_request(marker(mode="text", n=20))
        p, d = await self._latency("realistic", body, rounds, 10)
        note = f"{len(json.dumps(body)) // 1000} KB in, {self.raw['realistic']['request_bytes']['direct'] // 1000} KB upstream"
        self.add(Row("90 KB request TTFB p50", p["ttfb"]["p50"], d["ttfb"]["p50"], "ms",
                     added=p["ttfb"]["p50"] - d["ttfb"]["p50"], note=note))
        self.add(Row("90 KB request TTFB p99", p["ttfb"]["p99"], d["ttfb"]["p99"], "ms",
                     added=p["ttfb"]["p99"] - d["ttfb"]["p99"]))
        self.add(Row("90 KB request complete p50", p["total"]["p50"], d["total"]["p50"], "ms",
                     added=p["total"]["p50"] - d["total"]["p50"]))

    # ---------------------------------------------------------------- CPU per event

    async def cpu_per_event(self) -> None:
        print("CPU per upstream event translated (long streams of small deltas)", flush=True)
        n = 20000
        runs = 2 if self.quick else 4
        body = small_request(marker(mode="text", n=n))
        direct_payload = await self.direct_body(body)
        payload = json.dumps(body).encode()
        per_event: dict[str, list[float]] = {"packyd": [], "upstream_direct": [], "upstream_via_packyd": []}
        rate: dict[str, list[float]] = {"packyd": [], "direct": []}
        events = n + 8
        for _ in range(runs):
            conn = await http.connect(self.packyd.port)
            c0, u0 = cpu_seconds(self.packyd.pid), cpu_seconds(self.upstream.pid)
            result = await conn.request("POST", MESSAGES, payload, PACKYD_HEADERS)
            c1, u1 = cpu_seconds(self.packyd.pid), cpu_seconds(self.upstream.pid)
            conn.close()
            if not result.ended_with(*PACKYD_END):
                raise RuntimeError("long stream through packyd did not end with message_stop")
            per_event["packyd"].append((c1 - c0) / events * 1e6)
            per_event["upstream_via_packyd"].append((u1 - u0) / events * 1e6)
            rate["packyd"].append(events / result.total)

            conn = await http.connect(self.upstream.port)
            u0 = cpu_seconds(self.upstream.pid)
            result = await conn.request("POST", RESPONSES, direct_payload, DIRECT_HEADERS)
            u1 = cpu_seconds(self.upstream.pid)
            conn.close()
            per_event["upstream_direct"].append((u1 - u0) / events * 1e6)
            rate["direct"].append(events / result.total)
        self.raw["cpu_per_event_burst"] = {"events_per_stream": events, "us_per_event": {k: summary(v) for k, v in per_event.items()},
                                           "events_per_s": {k: summary(v) for k, v in rate.items()}}
        p = pct(per_event["packyd"], 50)
        d = pct(per_event["upstream_direct"], 50)
        self.add(Row("CPU per event, burst", p, d, "µs", TARGETS["cpu_us_per_event"],
                     note="direct = the fake upstream's own CPU per event it serves"))
        self.add(Row("events/s through one stream", pct(rate["packyd"], 50), pct(rate["direct"], 50), "ev/s",
                     higher_is_worse=False))

    # ---------------------------------------------------------------- sustained concurrency

    async def _sustain(self, port: int, path: str, payload: bytes, headers: dict, end: tuple[bytes, ...],
                       streams: int, pid: int, expected_events: int) -> dict[str, Any]:
        conns = await asyncio.gather(*(http.connect(port) for _ in range(streams)), return_exceptions=True)
        ok_conns = [c for c in conns if isinstance(c, http.Connection)]
        first = asyncio.get_running_loop().create_future()
        started = 0

        def on_event(result: http.Result) -> None:
            nonlocal started
            if result.events and not getattr(result, "_counted", False):
                result._counted = True  # type: ignore[attr-defined]
                started += 1
                if started == len(ok_conns) and not first.done():
                    first.set_result(None)

        t_start = time.monotonic()
        tasks = [asyncio.ensure_future(c.request("POST", path, payload, headers, on_event=on_event)) for c in ok_conns]
        try:
            await asyncio.wait_for(asyncio.shield(first), 30)
        except asyncio.TimeoutError:
            pass
        t0 = time.monotonic()
        cpu0 = cpu_seconds(pid)
        rss_peak = rss_kib(pid)
        pending = set(tasks)
        window_end: tuple[float, float] | None = None
        while pending:
            done, pending = await asyncio.wait(pending, timeout=0.25)
            rss_peak = max(rss_peak, rss_kib(pid))
            if done and window_end is None:
                window_end = (time.monotonic(), cpu_seconds(pid))
        if window_end is None:
            window_end = (time.monotonic(), cpu_seconds(pid))
        t1, cpu1 = window_end
        results = [t.result() for t in tasks]
        for c in ok_conns:
            c.close()
        errors = (len(conns) - len(ok_conns)) + sum(
            1 for r in results if r.status != 200 or not r.ended_with(*end) or r.events < expected_events)
        return {"streams": streams, "errors": errors, "cpu_share": (cpu1 - cpu0) / (t1 - t0) if t1 > t0 else float("nan"),
                "window_s": t1 - t0, "ramp_s": t0 - t_start, "rss_peak_kib": rss_peak,
                "events_received": sum(r.events for r in results),
                "stream_seconds": summary([r.end - r.sent for r in results])}

    async def sustained(self) -> None:
        rate = 50
        seconds = 6 if self.quick else 10
        for streams in (100, 500):
            print(f"sustained: {streams} concurrent streams x {rate} events/s for {seconds} s", flush=True)
            n = rate * seconds
            body = small_request(marker(mode="text", n=n, rate=rate))
            direct_payload = await self.direct_body(body)
            u_cpu0, u_t0 = cpu_seconds(self.upstream.pid), time.monotonic()
            via = await self._sustain(self.packyd.port, MESSAGES, json.dumps(body).encode(), PACKYD_HEADERS,
                                      PACKYD_END, streams, self.packyd.pid, n)
            via["upstream_cpu_share"] = (cpu_seconds(self.upstream.pid) - u_cpu0) / (time.monotonic() - u_t0)
            direct = await self._sustain(self.upstream.port, RESPONSES, direct_payload, DIRECT_HEADERS, DIRECT_END,
                                         streams, self.upstream.pid, n)
            self.raw[f"sustained_{streams}"] = {"packyd": via, "direct": direct, "rate": rate, "seconds": seconds}
            target = TARGETS["cpu_share_500x50"] if streams == 500 else None
            self.add(Row(f"{streams} streams x {rate} ev/s: CPU share", via["cpu_share"], direct["cpu_share"], "cores",
                         target, note=f"errors {via['errors']} (direct {direct['errors']}); "
                                      "direct = fake upstream serving the same load"))
            events = streams * rate
            self.add(Row(f"{streams} streams x {rate} ev/s: CPU per event", via["cpu_share"] / events * 1e6,
                         direct["cpu_share"] / events * 1e6, "µs", note="paced: about one event per upstream read"))
            self.add(Row(f"{streams} streams: peak RSS", via["rss_peak_kib"] / 1024, direct["rss_peak_kib"] / 1024, "MiB"))
            self.add(Row(f"{streams} streams: errors", via["errors"], direct["errors"], "streams"))
            self.add(Row(f"{streams} streams: stream duration p99", via["stream_seconds"]["p99"],
                         direct["stream_seconds"]["p99"], "s", note=f"{n} events at {rate}/s should take {seconds} s"))

    # ---------------------------------------------------------------- memory

    async def memory(self) -> None:
        print("memory: idle RSS and RSS per open stream", flush=True)
        streams = 100 if self.quick else 300
        idle = rss_kib(self.packyd.pid)
        self.raw["idle_rss_kib_after_ready"] = self.raw.get("idle_rss_kib_after_ready", idle)
        body = small_request(marker(mode="stall", rate=1))
        direct_payload = await self.direct_body(body)
        per_stream = {}
        for side, port, path, payload, headers, pid in (
                ("packyd", self.packyd.port, MESSAGES, json.dumps(body).encode(), PACKYD_HEADERS, self.packyd.pid),
                ("direct", self.upstream.port, RESPONSES, direct_payload, DIRECT_HEADERS, self.upstream.pid)):
            conns = await asyncio.gather(*(http.connect(port) for _ in range(streams)))
            await asyncio.sleep(0.3)
            before = rss_kib(pid)
            got = asyncio.get_running_loop().create_future()
            count = 0

            def on_event(result: http.Result) -> None:
                nonlocal count
                if not getattr(result, "_counted", False):
                    result._counted = True  # type: ignore[attr-defined]
                    count += 1
                    if count == streams and not got.done():
                        got.set_result(None)

            tasks = [asyncio.ensure_future(c.request("POST", path, payload, headers, on_event=on_event)) for c in conns]
            await asyncio.wait_for(got, 30)
            await asyncio.sleep(1.0)
            during = rss_kib(pid)
            for c in conns:
                c.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            per_stream[side] = {"rss_before_kib": before, "rss_open_kib": during,
                                "per_stream_kib": (during - before) / streams}
        await asyncio.sleep(1.0)
        self.raw["memory"] = {"streams": streams, **per_stream, "idle_rss_kib_after_streams": rss_kib(self.packyd.pid)}
        self.add(Row("idle RSS (after READY)", self.raw["idle_rss_kib_after_ready"] / 1024, None, "MiB",
                     TARGETS["idle_rss_mib"]))
        self.add(Row("idle RSS (after warm-up requests)", idle / 1024, None, "MiB", TARGETS["idle_rss_mib"]))
        self.add(Row("RSS per open stream", per_stream["packyd"]["per_stream_kib"], per_stream["direct"]["per_stream_kib"],
                     "KiB", TARGETS["rss_per_stream_kib"], note=f"{streams} streams; direct = fake upstream's RSS per stream"))

    # ---------------------------------------------------------------- disconnect

    async def _disconnect_once(self, port: int, path: str, payload: bytes, headers: dict, ident: str,
                               after_events: int) -> float | None:
        conn = await http.connect(port)
        closed_at: list[float] = []

        def on_event(result: http.Result) -> None:
            if result.events >= after_events and not closed_at:
                closed_at.append(time.monotonic())
                conn.close()

        task = asyncio.ensure_future(conn.request("POST", path, payload, headers, on_event=on_event))
        await asyncio.wait_for(task, 10)
        answer = json.loads(await self.control(f"/_bench/closed?id={ident}&wait=3"))
        if not closed_at or answer["closed_at"] is None:
            return None
        return answer["closed_at"] - closed_at[0]

    async def disconnect(self) -> None:
        trials = 40 if self.quick else 120
        for variant, rate, after in (("streaming", 50, 3), ("silent", 0.05, 1)):
            print(f"client disconnect -> upstream connection closed (upstream {variant})", flush=True)
            body = small_request(marker(mode="stall", rate=rate, id="ID00000000"))
            template_direct = await self.direct_body(body)
            template = json.dumps(body).encode()
            lat: dict[str, list[float]] = {"packyd": [], "direct": []}
            failures = {"packyd": 0, "direct": 0}
            for i in range(trials):
                for side, port, path, tmpl, headers in (
                        ("packyd", self.packyd.port, MESSAGES, template, PACKYD_HEADERS),
                        ("direct", self.upstream.port, RESPONSES, template_direct, DIRECT_HEADERS)):
                    ident = f"{variant[:2]}{side[0]}{i:07d}"
                    payload = tmpl.replace(b"ID00000000", ident.encode())
                    value = await self._disconnect_once(port, path, payload, headers, ident, after)
                    if value is None:
                        failures[side] += 1
                    else:
                        lat[side].append(value)
            self.raw[f"disconnect_{variant}"] = {side: summary(v, 1000) for side, v in lat.items()}
            self.raw[f"disconnect_{variant}"]["failures"] = failures
            p, d = self.raw[f"disconnect_{variant}"]["packyd"], self.raw[f"disconnect_{variant}"]["direct"]
            self.add(Row(f"disconnect -> upstream closed p50 ({variant})", p["p50"], d["p50"], "ms"))
            self.add(Row(f"disconnect -> upstream closed p99 ({variant})", p["p99"], d["p99"], "ms",
                         TARGETS["disconnect_p99_ms"], note=f"failures {failures['packyd']}"))

    # ---------------------------------------------------------------- startup

    def startup(self) -> None:
        print("start -> READY=1", flush=True)
        trials = 4 if self.quick else 10
        ready = [self.packyd.ready_after]
        for _ in range(trials - 1):
            proc = Packyd(self.upstream.port)
            ready.append(proc.ready_after)
            proc.stop()
        bare = []
        for _ in range(trials):
            t = time.monotonic()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append(time.monotonic() - t)
        self.raw["startup"] = {"ready_s": summary(ready), "python_c_pass_s": summary(bare)}
        self.add(Row("start -> READY=1 p50", pct(ready, 50), pct(bare, 50), "s", TARGETS["ready_s"],
                     note="direct = `python -c pass`"))
        self.add(Row("start -> READY=1 max", max(ready), max(bare), "s", TARGETS["ready_s"]))


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "packyd"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "unknown", False
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_mib": mem, "kernel": platform.release(),
            "python": platform.python_version(), "packyd_commit": commit + ("+dirty" if dirty else ""),
            "loadavg_at_start": os.getloadavg()}


def table(rows: list[Row]) -> str:
    head = ("figure", "packyd", "direct", "added", "ratio", "target", "")
    lines = []
    for row in rows:
        fmt = (lambda v: "-" if v is None else (f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"))
        lines.append((row.name, f"{fmt(row.packyd)} {row.unit}", "-" if row.direct is None else f"{fmt(row.direct)} {row.unit}",
                      "-" if row.added is None else f"{fmt(row.added)} {row.unit}",
                      "-" if row.ratio is None else f"{row.ratio:.2f}x",
                      "-" if row.target is None else f"≤ {row.target:g}", row.verdict))
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = [" | ".join(str(h).ljust(w) for h, w in zip(head, widths)),
           "-|-".join("-" * w for w in widths)]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


SUITES = ["memory", "ttfb", "realistic", "cpu", "sustained", "disconnect", "startup"]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    only = args.only.split(",") if args.only else SUITES
    upstream = Upstream()
    packyd = None
    try:
        packyd = Packyd(upstream.port)
        bench = Bench(upstream, packyd, args.quick)
        bench.raw["idle_rss_kib_after_ready"] = rss_kib(packyd.pid)
        # warm-up: first requests import lazily loaded modules and fill caches
        await bench._latency("warmup", small_request(marker(mode="text", n=5)), 20, 0)
        steps: dict[str, Callable[[], Awaitable[None] | None]] = {
            "memory": bench.memory, "ttfb": bench.ttfb, "realistic": bench.realistic, "cpu": bench.cpu_per_event,
            "sustained": bench.sustained, "disconnect": bench.disconnect, "startup": bench.startup}
        for name in SUITES:
            if name in only:
                outcome = steps[name]()
                if asyncio.iscoroutine(outcome):
                    await outcome
        bench.raw.pop("warmup", None)
        return {"rows": bench.rows, "raw": bench.raw}
    finally:
        if packyd is not None:
            packyd.stop()
        upstream.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (numbers are noisier)")
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(SUITES)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for the JSON result")
    args = parser.parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory_mib']} MiB, Linux {info['kernel']}, "
          f"Python {info['python']}, packyd {info['packyd_commit']}, load {info['loadavg_at_start']}", flush=True)
    started = time.monotonic()
    result = asyncio.run(run(args))
    elapsed = time.monotonic() - started
    rows: list[Row] = result["rows"]
    print()
    print(table(rows))
    print(f"\n{elapsed:.0f} s in all")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    document = {
        "machine": info, "elapsed_s": elapsed, "quick": args.quick, "targets": TARGETS,
        "figures": [{"name": r.name, "packyd": r.packyd, "direct": r.direct, "added": r.added, "ratio": r.ratio,
                     "unit": r.unit, "target": r.target, "verdict": r.verdict, "note": r.note} for r in rows],
        "raw": result["raw"],
    }
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(document, indent=2, default=str))
    (out / "latest.json").write_text(json.dumps(document, indent=2, default=str))
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
