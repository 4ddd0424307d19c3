"""``GET /metrics``: Prometheus text exposition (0.0.4), fed by real traffic through packyd.

The output is parsed line by line (every sample belongs to a family with HELP and TYPE,
histogram buckets are cumulative and end in ``+Inf`` = ``_count``) and the values are
checked against the requests the test made: successes, a quota error, a retry, a fallback,
a mid-stream failure, an open stream, a reload.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import trio

from packyd.daemon import build_runtime
from packyd.metrics import MAX_SERIES, Counter, Histogram, PackydMetrics
from tests.fixtures import streams
from tests.support.fake_anthropic import FakeAnthropic, anthropic_text_reply
from tests.support.fake_packycode import Chunk, FakePackycode, Reply, encode_sse, error_reply, sse_reply
from tests.support.inprocess import CLIENT_KEY, packyd_config, start_packyd

BODY = {"model": "claude-opus-4-8", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                     r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')


def parse_exposition(text: str) -> dict[str, float]:
    """Validate the text format and return ``{"name{labels}": value}``."""
    assert text.endswith("\n")
    families: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in {"counter", "gauge", "histogram"}, line
            families[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
        assert family in families, f"{name} has no # TYPE line"
        key = name + (match.group(2) or "")
        assert key not in samples, f"duplicate series {key}"
        samples[key] = float(match.group(3))
    for key in samples:
        if "_bucket{" in key and 'le="+Inf"' in key:
            base = key.replace("_bucket{", "_count{").replace(',le="+Inf"', "").replace('{le="+Inf"}', "")
            assert samples[base] == samples[key], (key, base)
    return samples


def buckets_are_cumulative(samples: dict[str, float], metric: str) -> None:
    series: dict[str, list[float]] = {}
    for key, value in samples.items():
        if key.startswith(metric + "_bucket{"):
            labels = re.sub(r',?le="[^"]*"', "", key)
            series.setdefault(labels, []).append(value)
    assert series, metric
    for values in series.values():
        assert values == sorted(values), values


async def scrape(server: Any, key: str = CLIENT_KEY) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.get("/metrics", headers={"authorization": f"Bearer {key}"})


async def test_metrics_follow_the_traffic(nursery: trio.Nursery) -> None:
    packy, relay = FakePackycode(), FakeAnthropic()
    await nursery.start(packy.serve)
    await nursery.start(relay.serve)
    relay.default = anthropic_text_reply("relay", model=BODY["model"])
    config = packyd_config(packy.url, packycode={"retries": {"max-attempts": 2, "max-backoff": "0.1s"}},
                           providers=[{"name": "claude-relay", "type": "anthropic", "base-url": relay.url,
                                       "api-key": "sk-ant-metrics-0001"}],
                           routing={"fallback": ["packycode", "claude-relay"]})
    server = await start_packyd(nursery, config)
    cut = Reply(chunks=(Chunk(encode_sse(streams.failed_stream()[:-1])),), end="cut")
    packy.script(
        sse_reply(streams.text_stream("one")),                                            # 200 stream
        sse_reply(streams.text_stream("two")),                                            # 200 json
        error_reply(429, "quota", type="insufficient_quota", code="insufficient_quota"),  # → relay serves
        error_reply(503, "busy", code="server_is_overloaded"),                            # retried …
        sse_reply(streams.text_stream("three")),                                          # … then 200
        cut,                                                                              # stream_error
    )
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers, timeout=10) as client:
        for stream in (True, False, True, True, True):
            response = await client.post("/v1/messages", json={**BODY, "stream": stream})
            assert response.status_code == 200, response.text

        # an open stream is counted while it is open
        packy.default = sse_reply(streams.text_stream("slow " * 40, pieces=40), per_event=True, delay=0.2)
        async with client.stream("POST", "/v1/messages", json={**BODY, "stream": True}) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: content_block_delta"):
                    break
            during = parse_exposition((await scrape(server)).text)
        with trio.fail_after(5):
            while parse_exposition((await scrape(server)).text)['packyd_active_streams{provider="packycode"}'] != 0:
                await trio.sleep(0.02)

    # a reload, the way the daemon swaps a new snapshot in
    services = server.services
    services.holder.swap(build_runtime(services.holder.current.load, 2, services))

    response = await scrape(server)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_exposition(response.text)
    assert during['packyd_active_streams{provider="packycode"}'] == 1
    assert samples['packyd_requests_total{provider="packycode",model="gpt-5-codex",status="200"}'] == 3
    assert samples['packyd_requests_total{provider="packycode",model="gpt-5-codex",status="stream_error"}'] == 1
    assert samples['packyd_requests_total{provider="packycode",model="gpt-5-codex",status="client_closed"}'] == 1
    assert samples['packyd_requests_total{provider="claude-relay",model="claude-opus-4-8",status="200"}'] == 1
    assert samples['packyd_retries_total{provider="packycode",reason="overloaded_error"}'] == 1
    assert samples['packyd_fallbacks_total{from="packycode",to="claude-relay"}'] == 1
    assert samples['packyd_upstream_errors_total{provider="packycode",type="rate_limit_error",'
                   'phase="before_first_byte"}'] == 1
    assert samples['packyd_upstream_errors_total{provider="packycode",type="api_error",phase="mid_stream"}'] == 1
    assert samples['packyd_upstream_first_byte_seconds_count{provider="packycode"}'] == 5
    assert samples['packyd_upstream_first_byte_seconds_count{provider="claude-relay"}'] == 1
    buckets_are_cumulative(samples, "packyd_upstream_first_byte_seconds")
    buckets_are_cumulative(samples, "packyd_upstream_duration_seconds")
    assert samples['packyd_upstream_duration_seconds_count{provider="packycode",outcome="ok"}'] == 3
    assert samples['packyd_circuit_state{provider="packycode"}'] == 0
    assert samples['packyd_circuit_state{provider="claude-relay"}'] == 0
    assert samples['packyd_reloads_total{result="ok"}'] == 1
    assert samples["packyd_config_last_reload_successful"] == 1
    assert samples["packyd_config_generation"] == 2
    # no keys, ever
    for secret in ("sk-test-packycode", "sk-ant-metrics-0001", CLIENT_KEY):
        assert secret not in response.text


async def test_runtime_switch_and_circuit_are_visible(nursery: trio.Nursery) -> None:
    packy = FakePackycode()
    await nursery.start(packy.serve)
    packy.default = error_reply(500, "down", code="server_error")
    server = await start_packyd(nursery, packyd_config(
        packy.url, packycode={"retries": {"max-attempts": 1}}, routing={"circuit-breaker": {"failures": 1}}))
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers, timeout=10) as client:
        assert (await client.post("/v1/messages", json=BODY)).status_code == 500
        assert (await client.post("/v0/providers/packycode/disable")).status_code == 200
    samples = parse_exposition((await scrape(server)).text)
    assert samples['packyd_circuit_state{provider="packycode"}'] == 2
    assert samples['packyd_circuit_openings_total{provider="packycode"}'] == 1
    assert samples['packyd_provider_runtime_disabled{provider="packycode"}'] == 1
    assert samples['packyd_requests_total{provider="packycode",model="gpt-5-codex",status="500"}'] == 1


async def test_management_key_guards_metrics(nursery: trio.Nursery) -> None:
    packy = FakePackycode()
    await nursery.start(packy.serve)
    server = await start_packyd(nursery, packyd_config(packy.url, **{"management-key": "metrics-mgmt-key-7"}))
    assert (await scrape(server)).status_code == 401  # the client key is not enough any more
    assert (await scrape(server, "metrics-mgmt-key-7")).status_code == 200
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.get("/metrics")).status_code == 401


def test_label_values_are_escaped_and_series_are_capped() -> None:
    counter = Counter("t_total", "test", ("model",))
    counter.inc('we"ird\\name\nx')
    assert 't_total{model="we\\"ird\\\\name\\nx"} 1' in counter.render()
    for index in range(MAX_SERIES + 50):
        counter.inc(f"model-{index}")
    rendered = counter.render()
    assert rendered.count("\n") <= MAX_SERIES + 3
    assert 't_total{model="other"} 51' in "\n".join(rendered)


def test_histogram_render() -> None:
    histogram = Histogram("h_seconds", "test", ("p",), buckets=(0.1, 1))
    for value in (0.05, 0.1, 0.5, 5):
        histogram.observe("x", value=value)
    lines = histogram.render()
    assert 'h_seconds_bucket{p="x",le="0.1"} 2' in lines
    assert 'h_seconds_bucket{p="x",le="1"} 3' in lines
    assert 'h_seconds_bucket{p="x",le="+Inf"} 4' in lines
    assert 'h_seconds_sum{p="x"} 5.65' in lines
    assert 'h_seconds_count{p="x"} 4' in lines
    parse_exposition("\n".join(lines) + "\n")


@pytest.mark.parametrize("metric", ["packyd_requests_total", "packyd_circuit_state", "packyd_reloads_total"])
def test_every_family_is_declared(metric: str) -> None:
    assert f"# TYPE {metric} " in PackydMetrics().render()
