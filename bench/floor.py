"""The stack's floor: the smallest proxy packyd's stack can be, for the benchmarks to compare with.

Same stack and settings as packyd (Quart-Trio on Hypercorn's trio worker, one httpx
AsyncClient with an unbounded pool and identity encoding, RESPONSE_TIMEOUT off, access log
off), but no translation, no routing, no per-request tasks: it posts the client's body
unchanged to ``{upstream}/v1/responses`` and streams the upstream's body back chunk by chunk.
"packyd minus floor" is what packyd's own code costs; "floor minus direct" is what the stack
costs before packyd does anything.

Run: ``python -m bench.floor --upstream-port N``; prints ``READY <port>``.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

__all__ = ["main"]


def create_app(upstream: str, client_box: list[httpx.AsyncClient]) -> QuartTrio:
    app = QuartTrio("floor")
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = None
    app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024

    @app.post("/v1/messages")
    async def messages() -> Response:
        body = await request.get_data()
        client = client_box[0]
        upstream_request = client.build_request("POST", upstream, content=body,
                                                headers={"content-type": "application/json",
                                                         "authorization": "Bearer sk-floor"})
        response = await client.send(upstream_request, stream=True)

        async def relay():  # type: ignore[no-untyped-def]
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return Response(relay(), status=response.status_code, content_type="text/event-stream")

    return app


async def run(port: int, upstream_port: int) -> None:
    client = httpx.AsyncClient(timeout=httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=10.0),
                               limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                               headers={"accept-encoding": "identity"})
    app = create_app(f"http://127.0.0.1:{upstream_port}/v1/responses", [client])
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    async with client, trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config))
        sys.stdout.write(f"READY {binds[0].rsplit(':', 1)[1]}\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        trio.run(run, args.port, args.upstream_port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
