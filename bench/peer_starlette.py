"""The peer Sentra is measured against: SSE fan-out written the way a Python team would, in one process.

Starlette + sse-starlette on uvicorn (uvloop, httptools). POST /pub/{channel} splits the body into lines
and puts each on every subscriber's in-process asyncio queue; GET /sub/{channel} streams a queue as
Server-Sent Events, one event per line. No database, no auth, no persistence.

    python bench/peer_starlette.py --port 8766
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

channels: defaultdict[str, set[asyncio.Queue[str]]] = defaultdict(set)


async def publish(request: Request) -> Response:
    """Fan each line of the body out to the channel's subscribers."""
    body = await request.body()
    lines = [line for line in body.decode().split("\n") if line]
    for queue in channels.get(request.path_params["channel"], ()):
        for line in lines:
            queue.put_nowait(line)
    return JSONResponse({"accepted": len(lines)})


async def subscribe(request: Request) -> Response:
    """Stream the channel's lines as they are published."""
    channel = request.path_params["channel"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    channels[channel].add(queue)

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            while True:
                yield {"data": await queue.get()}
        finally:
            channels[channel].discard(queue)
            if not channels[channel]:
                del channels[channel]

    return EventSourceResponse(events())


async def health(request: Request) -> Response:
    """Liveness for the benchmark's start-up check."""
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/pub/{channel}", publish, methods=["POST"]),
        Route("/sub/{channel}", subscribe),
        Route("/healthz", health),
    ]
)


def main() -> None:
    """Serve on 127.0.0.1 with uvloop and httptools, one process, no access log."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
