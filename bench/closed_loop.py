"""Closed-loop HTTP/1.1 load over TLS keep-alive connections: how many requests per second
can a server answer at most? Each connection sends its next request as soon as the previous
answer arrived. Raw asyncio streams keep the client's own cost per request small.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _request(host: str, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _connection(host: str, port: int, tls: ssl.SSLContext | None, request: bytes,
                      stop_at: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(
        host, port, ssl=tls, server_hostname="localhost" if tls else None)
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if head[9:12] == b"200":
                result.requests += 1
                result.latencies.append(time.perf_counter() - start)
            else:
                result.errors += 1
    finally:
        writer.close()


async def run(host: str, port: int, path: str, body: bytes, *, connections: int,
              seconds: float, cafile: str | None) -> Result:
    tls = ssl.create_default_context(cafile=cafile) if cafile else None
    result = Result()
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(_connection(host, port, tls, _request(host, path, body), stop_at,
                                       result) for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    return result


def main() -> None:
    """`python -m bench.closed_loop`: run once and print the figures as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--cafile")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    r = asyncio.run(run("localhost", args.port, args.path, args.body.encode(),
                        connections=args.connections, seconds=args.seconds,
                        cafile=args.cafile))
    print(json.dumps({"rate": r.rate, "errors": r.errors, "p50_ms": r.percentile(50) * 1000,
                      "p99_ms": r.percentile(99) * 1000}))


if __name__ == "__main__":
    main()
