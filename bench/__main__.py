"""packyd benchmarks: every figure as packyd vs a direct connection to the same fake upstream.

    .venv/bin/python -m bench              # the whole run (about 3-4 minutes): table + JSON
    .venv/bin/python -m bench --quick      # fewer repetitions, for trying changes (~1.5 minutes)
    .venv/bin/python -m bench --only ttfb,cpu
    .venv/bin/python -m bench --launcher patched.py   # A/B: run a patched packyd instead

What runs: ``bench.upstream`` (a fast fake Packycode on asyncio), packyd as a subprocess started
the way systemd starts it (``python -m packyd serve --config …`` with a notify socket),
``bench.floor`` (the same web stack as packyd forwarding bytes untranslated: the floor any
packyd on this stack sits on), and this process as the client (``bench.client``).

Three ways to the same upstream, measured in the same run, interleaved:

* ``packyd``: the client's Anthropic request to packyd, which translates it and streams back;
* ``floor``: the same request through bench.floor (no translation);
* ``direct``: the request packyd would send upstream (captured from the fake), sent straight
  to the fake.

"added" is packyd − direct; "own" is packyd − floor (what packyd's own code costs). CPU and
memory come from /proc/PID/stat and /proc/PID/status. Results go to bench/results/*.json; see
docs/benchmarks.md for what each figure means and the latest numbers.
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
from typing import Any

from . import client as http
from .procs import ROOT, Floor, Packyd, Upstream, cpu_seconds, rss_kib
from .workload import claude_code_request, marker, small_request

PACKYD_HEADERS = {"content-type": "application/json", "x-api-key": "bench-key", "anthropic-version": "2023-06-01",
                  "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"}
DIRECT_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-0000000000000000",
                  "accept": "text/event-stream"}
MARKER = re.compile(rb"\[bench [^\]]*\]")
SIDES = ("packyd", "floor", "direct")

TARGETS = {
    "ttfb_added_p50_ms": 1.0,
    "ttfb_added_p99_ms": 2.5,
    "cpu_us_per_event": 10.0,
    "cores_500x50": 1.0,
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
    if not values:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"n": len(values), "p50": pct(values, 50) * scale, "p99": pct(values, 99) * scale,
            "min": min(values) * scale, "max": max(values) * scale}


@dataclass
class Row:
    name: str
    unit: str
    packyd: float
    direct: float | None = None
    floor: float | None = None
    target: float | None = None
    #: what the target applies to: "added" (packyd − direct) or "packyd"
    target_on: str = "packyd"
    #: set when the verdict needs more than one number (sustained load)
    passed: bool | None = None
    note: str = ""
    #: False for rates, where a difference means nothing (the ratio still does)
    differences: bool = True

    @property
    def added(self) -> float | None:
        return None if self.direct is None or not self.differences else self.packyd - self.direct

    @property
    def own(self) -> float | None:
        return None if self.floor is None or not self.differences else self.packyd - self.floor

    @property
    def ratio(self) -> float | None:
        if not self.direct:
            return None
        return self.packyd / self.direct

    @property
    def verdict(self) -> str:
        if self.passed is not None:
            return "ok" if self.passed else "MISS"
        if self.target is None:
            return ""
        value = self.added if self.target_on == "added" else self.packyd
        return "ok" if value is not None and value <= self.target else "MISS"


@dataclass
class Side:
    name: str
    port: int
    pid: int
    path: str
    headers: dict[str, str]
    end: bytes


@dataclass
class Bench:
    upstream: Upstream
    packyd: Packyd
    floor: Floor
    quick: bool
    launcher: str | None = None
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sides = {
            "packyd": Side("packyd", self.packyd.port, self.packyd.pid, "/v1/messages?beta=true", PACKYD_HEADERS,
                           b"message_stop"),
            "floor": Side("floor", self.floor.port, self.floor.pid, "/v1/messages", PACKYD_HEADERS,
                          b"response.completed"),
            "direct": Side("direct", self.upstream.port, self.upstream.pid, "/v1/responses", DIRECT_HEADERS,
                           b"response.completed"),
        }

    # ---------------------------------------------------------------- helpers

    async def control(self, path: str) -> bytes:
        conn = await http.connect(self.upstream.port)
        try:
            result = await conn.request("GET", path, keep_body=True)
        finally:
            conn.close()
        return bytes(result.body or b"")

    async def payloads(self, anthropic_body: dict) -> dict[str, bytes]:
        """The body each side sends. Direct sends what packyd sends upstream: the request goes
        through packyd once with a short text scenario in place of its own marker (a stall would
        never end), is read back from the fake, and gets its marker back."""
        payload = json.dumps(anthropic_body).encode()
        wanted = MARKER.search(payload).group(0)  # type: ignore[union-attr]
        probe = marker(mode="text", n=1).encode()
        conn = await http.connect(self.packyd.port)
        try:
            result = await conn.request("POST", self.sides["packyd"].path, payload.replace(wanted, probe),
                                        PACKYD_HEADERS)
        finally:
            conn.close()
        if result.status != 200:
            raise RuntimeError(f"packyd answered {result.status} while capturing the upstream body")
        captured = await self.control("/_bench/last")
        if captured.count(probe) != 1:
            raise RuntimeError("the scenario marker did not reach the upstream body intact")
        return {"packyd": payload, "floor": payload, "direct": captured.replace(probe, wanted)}

    def add(self, row: Row) -> None:
        self.rows.append(row)
        parts = [f"{side} {value:.3f}" for side, value in (("packyd", row.packyd), ("floor", row.floor),
                                                             ("direct", row.direct)) if value is not None]
        print(f"  {row.name}: " + ", ".join(parts) + f" {row.unit} {row.verdict}", flush=True)

    # ---------------------------------------------------------------- latency

    async def _latency(self, key: str, anthropic_body: dict, rounds: int, warmup: int) -> dict[str, Any]:
        payloads = await self.payloads(anthropic_body)
        conns = {name: await http.connect(side.port) for name, side in self.sides.items()}
        samples: dict[str, dict[str, list[float]]] = {name: {"ttfb": [], "total": []} for name in SIDES}
        errors = dict.fromkeys(SIDES, 0)
        try:
            for i in range(warmup + rounds):
                order = SIDES[i % 3:] + SIDES[:i % 3]  # rotate, so no side always follows another
                for name in order:
                    side = self.sides[name]
                    if conns[name].closed:  # the server ended keep-alive; reconnect outside the timing
                        conns[name] = await http.connect(side.port)
                    result = await conns[name].request("POST", side.path, payloads[name], side.headers)
                    if result.status != 200 or not result.ended_with(side.end):
                        errors[name] += 1
                        continue
                    if i >= warmup:
                        samples[name]["ttfb"].append(result.ttfb)
                        samples[name]["total"].append(result.total)
        finally:
            for conn in conns.values():
                conn.close()
        out: dict[str, Any] = {name: {metric: summary(values, 1000) for metric, values in metrics.items()}
                               for name, metrics in samples.items()}
        out["errors"] = errors
        out["request_bytes"] = {name: len(body) for name, body in payloads.items()}
        self.raw[key] = out
        return out

    def _latency_rows(self, label: str, out: dict[str, Any], metric: str, targets: bool = False) -> None:
        for q in ("p50", "p99"):
            self.add(Row(f"{label} {q}", "ms", out["packyd"][metric][q], direct=out["direct"][metric][q],
                         floor=out["floor"][metric][q], target_on="added",
                         target=TARGETS[f"ttfb_added_{q}_ms"] if targets else None,
                         note=f"errors {out['errors']['packyd']}" if out["errors"]["packyd"] else ""))

    async def ttfb(self) -> None:
        print("added time to first byte, small streaming request, concurrency 1", flush=True)
        out = await self._latency("ttfb_small", small_request(marker(mode="text", n=5)), 150 if self.quick else 500, 30)
        self._latency_rows("TTFB, small stream", out, "ttfb", targets=True)
        self._latency_rows("complete, small stream", out, "total")

    async def realistic(self) -> None:
        print("added latency, realistic Claude Code request (~90 KB, 24 tools)", flush=True)
        body = claude_code_request(marker(mode="text", n=20))
        out = await self._latency("realistic", body, 60 if self.quick else 200, 10)
        sizes = out["request_bytes"]
        self.raw["realistic"]["note"] = f"{sizes['packyd'] // 1000} KB to packyd, {sizes['direct'] // 1000} KB upstream"
        self._latency_rows("TTFB, 90 KB request", out, "ttfb")
        self._latency_rows("complete, 90 KB request", out, "total")

    # ---------------------------------------------------------------- CPU per event

    async def cpu_per_event(self) -> None:
        print("CPU per upstream event (long streams of small deltas, sent as fast as possible)", flush=True)
        n = 20000
        events = n + 8
        runs = 2 if self.quick else 4
        payloads = await self.payloads(small_request(marker(mode="text", n=n)))
        per_event: dict[str, list[float]] = {name: [] for name in SIDES}
        upstream_cost: list[float] = []
        rate: dict[str, list[float]] = {name: [] for name in SIDES}
        for _ in range(runs):
            for name in SIDES:
                side = self.sides[name]
                conn = await http.connect(side.port)
                c0, u0 = cpu_seconds(side.pid), cpu_seconds(self.upstream.pid)
                result = await conn.request("POST", side.path, payloads[name], side.headers)
                c1, u1 = cpu_seconds(side.pid), cpu_seconds(self.upstream.pid)
                conn.close()
                if not result.ended_with(side.end):
                    raise RuntimeError(f"the long stream through {name} did not end properly")
                per_event[name].append((c1 - c0) / events * 1e6)
                if name == "packyd":
                    upstream_cost.append((u1 - u0) / events * 1e6)
                rate[name].append(events / result.total)
        self.raw["cpu_per_event_burst"] = {
            "events_per_stream": events, "us_per_event": {k: summary(v) for k, v in per_event.items()},
            "upstream_us_per_event_via_packyd": summary(upstream_cost),
            "events_per_s": {k: summary(v) for k, v in rate.items()}}
        self.add(Row("CPU per event, burst", "µs", pct(per_event["packyd"], 50), floor=pct(per_event["floor"], 50),
                     direct=pct(per_event["direct"], 50), target=TARGETS["cpu_us_per_event"],
                     note="each side's own process; direct = the fake upstream serving the events"))
        self.add(Row("events/s through one stream", "ev/s", pct(rate["packyd"], 50), floor=pct(rate["floor"], 50),
                     direct=pct(rate["direct"], 50), differences=False))
        self.translation_only()

    def translation_only(self) -> None:
        """packyd's per-event work without any I/O, in this process: SSE parse, JSON decode,
        translate, SSE encode, over the same upstream bytes the fake sends (one event per chunk)."""
        from packyd.sse import SSEParser, encode_events
        from packyd.translate.stream import StreamTranslator

        from . import upstream as fake

        n = 20000
        chunks = [fake._head(0)] + [fake._delta(4 + i, b"tok ") for i in range(n)] + [fake._tail(4 + n, "tok " * n, 100)]
        times = []
        for _ in range(5):
            parser, translator = SSEParser(), StreamTranslator(requested_model="claude-opus-4-8")
            started = time.perf_counter()
            for chunk in chunks:
                batch: list[dict] = []
                for event in parser.feed(chunk):
                    batch.extend(translator.feed(json.loads(event.data)))
                if batch:
                    encode_events(batch)
            times.append((time.perf_counter() - started) / (n + 8) * 1e6)
        self.raw["translation_only_us_per_event"] = summary(times)
        self.add(Row("CPU per event, translation only (no I/O)", "µs", pct(times, 50), target=TARGETS["cpu_us_per_event"],
                     note="SSE parse + JSON decode + translate + SSE encode, in-process"))

    # ---------------------------------------------------------------- sustained concurrency

    async def _sustain(self, side: Side, payload: bytes, streams: int, seconds: float,
                       expected_events: int) -> dict[str, Any]:
        conns = await asyncio.gather(*(http.connect(side.port) for _ in range(streams)), return_exceptions=True)
        ok_conns = [c for c in conns if isinstance(c, http.Connection)]
        cpu0, up0, t0 = cpu_seconds(side.pid), cpu_seconds(self.upstream.pid), time.monotonic()
        rss_peak = rss_kib(side.pid)
        tasks = [asyncio.ensure_future(c.request("POST", side.path, payload, side.headers)) for c in ok_conns]
        pending = set(tasks)
        deadline = t0 + seconds * 6 + 10
        while pending and time.monotonic() < deadline:
            _, pending = await asyncio.wait(pending, timeout=0.25)
            rss_peak = max(rss_peak, rss_kib(side.pid))
        t1 = time.monotonic()
        cpu = cpu_seconds(side.pid) - cpu0
        upstream_cpu = cpu_seconds(self.upstream.pid) - up0
        for c in ok_conns:
            c.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        results = [t.result() for t in tasks if not t.cancelled() and t.exception() is None]
        errors = (streams - len(results)) + sum(
            1 for r in results if r.status != 200 or not r.ended_with(side.end) or r.events < expected_events)
        return {"streams": streams, "errors": errors, "wall_s": t1 - t0, "cpu_s": cpu,
                "cpu_share": cpu / (t1 - t0), "cores_needed": cpu / seconds, "upstream_cpu_s": upstream_cpu,
                "rss_peak_kib": rss_peak, "events_received": sum(r.events for r in results),
                "stream_seconds": summary([r.end - r.sent for r in results])}

    async def sustained(self) -> None:
        rate = 50
        seconds = 5 if self.quick else 8
        n = rate * seconds
        for streams in (100, 500):
            print(f"sustained: {streams} concurrent streams x {rate} events/s for {seconds} s", flush=True)
            payloads = await self.payloads(small_request(marker(mode="text", n=n, rate=rate)))
            out = {name: await self._sustain(self.sides[name], payloads[name], streams, seconds, n) for name in SIDES}
            self.raw[f"sustained_{streams}"] = {**out, "rate": rate, "seconds": seconds}
            p, f, d = out["packyd"], out["floor"], out["direct"]
            kept_up = p["errors"] == 0 and p["stream_seconds"]["p99"] <= seconds * 1.2
            self.add(Row(f"{streams}×{rate} ev/s: cores needed", "cores", p["cores_needed"], floor=f["cores_needed"],
                         direct=d["cores_needed"], target=TARGETS["cores_500x50"] if streams == 500 else None,
                         passed=(kept_up and p["cores_needed"] <= TARGETS["cores_500x50"]) if streams == 500 else None,
                         note="process CPU ÷ nominal duration; direct = the fake upstream"))
            events = streams * n
            self.add(Row(f"{streams}×{rate} ev/s: CPU per event", "µs", p["cpu_s"] / events * 1e6,
                         floor=f["cpu_s"] / events * 1e6, direct=d["cpu_s"] / events * 1e6,
                         note="about one event per upstream read"))
            self.add(Row(f"{streams}×{rate} ev/s: stream duration p99", "s", p["stream_seconds"]["p99"],
                         floor=f["stream_seconds"]["p99"], direct=d["stream_seconds"]["p99"],
                         note=f"{n} events at {rate}/s take {seconds} s when the proxy keeps up"))
            self.add(Row(f"{streams}×{rate} ev/s: errors", "streams", p["errors"], floor=f["errors"], direct=d["errors"],
                         differences=False))
            self.add(Row(f"{streams}×{rate} ev/s: peak RSS", "MiB", p["rss_peak_kib"] / 1024,
                         floor=f["rss_peak_kib"] / 1024, direct=d["rss_peak_kib"] / 1024))

    # ---------------------------------------------------------------- memory

    async def memory(self) -> None:
        print("memory: idle RSS and RSS per open stream", flush=True)
        streams = 100 if self.quick else 300
        idle = rss_kib(self.packyd.pid)
        payloads = await self.payloads(small_request(marker(mode="stall", rate=1)))
        per_stream: dict[str, dict[str, float]] = {}
        for name in SIDES:
            side = self.sides[name]
            conns = await asyncio.gather(*(http.connect(side.port) for _ in range(streams)))
            await asyncio.sleep(0.3)
            before = rss_kib(side.pid)
            got = asyncio.get_running_loop().create_future()
            started: set[int] = set()

            def on_event(result: http.Result) -> None:
                started.add(id(result))
                if len(started) == streams and not got.done():
                    got.set_result(None)

            tasks = [asyncio.ensure_future(c.request("POST", side.path, payloads[name], side.headers,
                                                     on_event=on_event)) for c in conns]
            await asyncio.wait_for(got, 30)
            await asyncio.sleep(1.0)
            during = rss_kib(side.pid)
            for c in conns:
                c.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            per_stream[name] = {"rss_before_kib": before, "rss_open_kib": during,
                                "per_stream_kib": (during - before) / streams}
        await asyncio.sleep(1.0)
        self.raw["memory"] = {"streams": streams, **per_stream, "idle_rss_kib_after_warmup": idle,
                              "idle_rss_kib_after_streams": rss_kib(self.packyd.pid)}
        ready = self.raw["idle_rss_kib_after_ready"]
        self.add(Row("idle RSS, just after READY", "MiB", ready / 1024, target=TARGETS["idle_rss_mib"]))
        self.add(Row("idle RSS, after the first requests", "MiB", idle / 1024,
                     floor=self.raw["floor_idle_rss_kib"] / 1024, target=TARGETS["idle_rss_mib"]))
        self.add(Row("RSS per open stream", "KiB", per_stream["packyd"]["per_stream_kib"],
                     floor=per_stream["floor"]["per_stream_kib"], direct=per_stream["direct"]["per_stream_kib"],
                     target=TARGETS["rss_per_stream_kib"], note=f"{streams} open streams; each side's own process"))

    # ---------------------------------------------------------------- disconnect

    async def _disconnect_once(self, side: Side, payload: bytes, ident: str, after_events: int) -> float | None:
        conn = await http.connect(side.port)
        closed_at: list[float] = []

        def on_event(result: http.Result) -> None:
            if result.events >= after_events and not closed_at:
                closed_at.append(time.monotonic())
                conn.close()

        await asyncio.wait_for(conn.request("POST", side.path, payload, side.headers, on_event=on_event), 10)
        answer = json.loads(await self.control(f"/_bench/closed?id={ident}&wait=3"))
        if not closed_at or answer["closed_at"] is None:
            return None
        return answer["closed_at"] - closed_at[0]

    async def disconnect(self) -> None:
        trials = 40 if self.quick else 100
        for variant, rate, after in (("upstream streaming", 50, 3), ("upstream silent", 0.05, 1)):
            print(f"client disconnect -> upstream connection closed ({variant})", flush=True)
            templates = await self.payloads(small_request(marker(mode="stall", rate=rate, id="ID00000000")))
            lat: dict[str, list[float]] = {name: [] for name in SIDES}
            failures = dict.fromkeys(SIDES, 0)
            for i in range(trials):
                for name in SIDES:
                    ident = f"{variant[9:11]}{name[0]}{i:07d}"
                    value = await self._disconnect_once(self.sides[name],
                                                        templates[name].replace(b"ID00000000", ident.encode()),
                                                        ident, after)
                    if value is None:
                        failures[name] += 1
                    else:
                        lat[name].append(value)
            key = "disconnect_" + variant.split()[1]
            self.raw[key] = {name: summary(values, 1000) for name, values in lat.items()}
            self.raw[key]["failures"] = failures
            p, f, d = (self.raw[key][name] for name in SIDES)
            self.add(Row(f"disconnect → upstream closed p50 ({variant})", "ms", p["p50"], floor=f["p50"], direct=d["p50"]))
            self.add(Row(f"disconnect → upstream closed p99 ({variant})", "ms", p["p99"], floor=f["p99"], direct=d["p99"],
                         target=TARGETS["disconnect_p99_ms"],
                         note=f"{failures['packyd']} of {trials} not closed" if failures["packyd"] else ""))

    # ---------------------------------------------------------------- startup

    async def startup(self) -> None:
        print("start -> READY=1, and the first request after it", flush=True)
        trials = 4 if self.quick else 10
        ready = [self.packyd.ready_after]
        first_ttfb: list[float] = []
        body = json.dumps(small_request(marker(mode="text", n=5))).encode()
        for _ in range(trials - 1):
            proc = Packyd(self.upstream.port, launcher=self.launcher)
            ready.append(proc.ready_after)
            try:
                conn = await http.connect(proc.port)
                result = await conn.request("POST", self.sides["packyd"].path, body, PACKYD_HEADERS)
                conn.close()
                if result.status == 200:
                    first_ttfb.append(result.ttfb)
            finally:
                proc.stop()
        bare = []
        for _ in range(trials):
            t = time.monotonic()
            subprocess.run([sys.executable, "-c", "import trio, hypercorn, quart_trio, httpx"], check=True)
            bare.append(time.monotonic() - t)
        self.raw["startup"] = {"ready_s": summary(ready), "import_stack_s": summary(bare),
                               "first_request_ttfb_ms": summary(first_ttfb, 1000)}
        self.add(Row("start → READY=1 p50", "s", pct(ready, 50), floor=pct(bare, 50), target=TARGETS["ready_s"],
                     note="floor = a bare `python -c 'import trio, hypercorn, quart_trio, httpx'`"))
        self.add(Row("start → READY=1 max", "s", max(ready), floor=max(bare), target=TARGETS["ready_s"]))
        steady = self.raw.get("ttfb_small", {}).get("packyd", {}).get("ttfb", {}).get("p50")
        self.add(Row("TTFB of the first request after READY p50", "ms", pct(first_ttfb, 50) * 1000,
                     note="a fresh packyd; compare the steady-state TTFB" + (f" ({steady:.2f} ms)" if steady else "")))


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
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if value != value:  # nan
        return "nan"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    head = ("figure", "unit", "packyd", "floor", "direct", "added", "own", "ratio", "target", "")
    lines = [(r.name, r.unit, _fmt(r.packyd), _fmt(r.floor), _fmt(r.direct), _fmt(r.added), _fmt(r.own),
              "-" if r.ratio is None else f"{r.ratio:.1f}x",
              "-" if r.target is None else ("added " if r.target_on == "added" else "") + f"≤ {r.target:g}",
              r.verdict) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


SUITES = ["memory", "ttfb", "realistic", "cpu", "sustained", "disconnect", "startup"]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    only = args.only.split(",") if args.only else SUITES
    unknown = set(only) - set(SUITES)
    if unknown:
        raise SystemExit(f"unknown suite(s): {', '.join(sorted(unknown))}; choose from {', '.join(SUITES)}")
    upstream = Upstream()
    packyd = floor = None
    try:
        packyd = Packyd(upstream.port, launcher=args.launcher)
        floor = Floor(upstream.port)
        bench = Bench(upstream, packyd, floor, args.quick, args.launcher)
        bench.raw["idle_rss_kib_after_ready"] = rss_kib(packyd.pid)
        # warm-up: the first requests import lazily loaded modules and fill caches
        await bench._latency("warmup", small_request(marker(mode="text", n=5)), 20, 0)
        bench.raw.pop("warmup", None)
        bench.raw["floor_idle_rss_kib"] = rss_kib(floor.pid)
        for name in SUITES:
            if name in only:
                step = {"memory": bench.memory, "ttfb": bench.ttfb, "realistic": bench.realistic,
                        "cpu": bench.cpu_per_event, "sustained": bench.sustained, "disconnect": bench.disconnect,
                        "startup": bench.startup}[name]
                outcome = step()
                if asyncio.iscoroutine(outcome):
                    await outcome
        return {"rows": bench.rows, "raw": bench.raw}
    finally:
        for proc in (floor, packyd):
            if proc is not None:
                proc.stop()
        upstream.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (numbers are noisier)")
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(SUITES)}")
    parser.add_argument("--launcher", metavar="SCRIPT",
                        help="run this Python script instead of `-m packyd` (same arguments), for A/B experiments "
                             "with a patched hot path")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for the JSON result")
    args = parser.parse_args(argv)
    info = machine()
    info["launcher"] = args.launcher
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory_mib']} MiB, Linux {info['kernel']}, "
          f"Python {info['python']}, packyd {info['packyd_commit']}, load {info['loadavg_at_start']}", flush=True)
    started = time.monotonic()
    result = asyncio.run(run(args))
    elapsed = time.monotonic() - started
    rows: list[Row] = result["rows"]
    print()
    print(table(rows))
    print(f"\n{elapsed:.0f} s in all; load average now {[round(x, 2) for x in os.getloadavg()]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": info, "elapsed_s": elapsed, "quick": args.quick, "targets": TARGETS,
        "figures": [{"name": r.name, "unit": r.unit, "packyd": r.packyd, "floor": r.floor, "direct": r.direct,
                     "added": r.added, "own": r.own, "ratio": r.ratio, "target": r.target,
                     "target_on": r.target_on, "verdict": r.verdict, "note": r.note} for r in rows],
        "raw": result["raw"],
    }
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    text = json.dumps(document, indent=2, default=str)
    path.write_text(text)
    (out / "latest.json").write_text(text)
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
