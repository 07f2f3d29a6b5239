#!/usr/bin/env python3
"""The moving parts of scripts/bench-soak.sh (`make bench-soak`), standard library only.

  upstream  a paced OpenAI-compatible SSE upstream: every POST /v1/chat/completions is answered
            with CHUNKS content chunks, one every INTERVAL seconds, then usage and [DONE]
            (`stream: false` gets the JSON at once); HTTP/1.1 keep-alive, so a gateway's pool
            reuses connections. Slow on purpose: a stream stays open CHUNKS x INTERVAL seconds,
            so thousands of them are open at once through the proxy under test.
  burst     opens N streams at once (one connection each) and reads every one to `data: [DONE]`;
            samples the proxy's RSS and CPU time (/proc/PID) meanwhile; prints one JSON line.
  soak      keeps C requests in flight (3 streams to 1 JSON) for SECONDS; samples the proxy's
            RSS every SAMPLE seconds and fits a line (MB/min); prints one JSON line.

A stream counts as a success when its status is 200 and `data: [DONE]` arrives with no error
event before it; a JSON request when its status is 200 and it has `choices`.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time

# === upstream ===

CHUNK = ('data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
         '"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
FINISH = ('data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
          '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
USAGE = ('data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
         '"usage":{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}}\n\n')
JSON_BODY = ('{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
             '"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
             '"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')
MODELS = '{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"soak"}]}'


async def read_request(reader):
    """One request on a keep-alive connection: (method, path, body, close?)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return method, path, body, close


async def serve_upstream(args):
    async def handle(reader, writer):
        try:
            while True:
                try:
                    method, _, body, close = await read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                stream = method == "POST" and b'"stream":true' in body.replace(b" ", b"")
                if not stream:
                    reply = MODELS if method == "GET" else JSON_BODY
                    await respond(writer, "application/json", [reply.encode()], 0)
                    if close:
                        return
                    continue
                parts = [CHUNK.encode()] * args.chunks
                tail = FINISH + USAGE % (args.chunks, args.chunks + 5) + "data: [DONE]\n\n"
                parts.append(tail.encode())
                await respond(writer, "text/event-stream", parts, args.interval)
                if close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def respond(writer, ctype, parts, interval):
        length = sum(len(p) for p in parts)
        writer.write((f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {length}\r\n"
                      "cache-control: no-cache\r\n\r\n").encode())
        for i, part in enumerate(parts):
            if i and interval:
                await asyncio.sleep(interval)
            writer.write(part)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=8192)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# === client ===

def request_bytes(host, port, key, stream, model):
    body = json.dumps({"model": model, "stream": stream, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "soak"}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n")
    if key:
        head += f"authorization: Bearer {key}\r\n"
    return head.encode() + b"\r\n" + body


async def one(args, stream, on_open=None):
    """One request on its own connection: (ok, why, seconds to first byte)."""
    host, port, timeout = args.host, args.port, args.timeout
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return False, f"connect: {type(e).__name__}", None
    opened = on_open() if on_open else None
    try:
        writer.write(request_bytes(host, port, args.key, stream, args.model))
        data = bytearray()
        ttfb = None
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, "timeout", ttfb
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                break
            if ttfb is None:
                ttfb = time.monotonic() - t0
            data += chunk
            if stream and b"data: [DONE]" in data:
                break
        status = data[9:12].decode(errors="replace")
        if status != "200":
            return False, f"status {status}", ttfb
        if stream:
            if b"data: [DONE]" not in data:
                return False, "no [DONE]", ttfb
            if b'"error"' in data:
                return False, "error event", ttfb
        elif b'"choices"' not in data:
            return False, "no choices", ttfb
        return True, "ok", ttfb
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        return False, type(e).__name__, None
    finally:
        if opened:
            opened()
        writer.close()


# === process sampling ===

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def rss_mb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/statm") as f:
            total += int(f.read().split()[1]) * PAGE
    return total / 1e6


def cpu_s(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def pids_of(arg):
    """'123' or '123,456' (nginx: master and worker)."""
    return [int(p) for p in arg.split(",") if p]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def burst(args):
    raise_fd_limit()
    pids = pids_of(args.pid)
    open_now = peak = 0

    def on_open():
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)

        def closed():
            nonlocal open_now
            open_now -= 1
        return closed

    rss0, cpu0 = rss_mb(pids), cpu_s(pids)
    rss_peak = rss0
    done = asyncio.Event()

    async def sample():
        nonlocal rss_peak
        while not done.is_set():
            rss_peak = max(rss_peak, rss_mb(pids))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(args, True, on_open)
                                     for _ in range(args.n)))
    wall = time.monotonic() - t0
    done.set()
    await sampler
    rss_peak = max(rss_peak, rss_mb(pids))
    await asyncio.sleep(2)  # connections closed, buffers returned
    why = {}
    for ok, reason, _ in results:
        if not ok:
            why[reason] = why.get(reason, 0) + 1
    ttfb = [t for ok, _, t in results if ok and t is not None]
    print(json.dumps({
        "streams": args.n, "ok": sum(1 for r in results if r[0]), "failed": why,
        "peak_open": peak, "wall_s": round(wall, 2),
        "ttfb_p50_ms": round(1000 * pct(ttfb, 0.5), 1) if ttfb else None,
        "ttfb_p99_ms": round(1000 * pct(ttfb, 0.99), 1) if ttfb else None,
        "rss_before_mb": round(rss0, 1), "rss_peak_mb": round(rss_peak, 1),
        "rss_after_mb": round(rss_mb(pids), 1), "cpu_s": round(cpu_s(pids) - cpu0, 2),
    }), flush=True)


def slope(points):
    """Least-squares slope of (minute, MB) points, MB per minute."""
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


async def soak(args):
    raise_fd_limit()
    pids = pids_of(args.pid)
    counts = {"ok": 0}
    failed = {}
    stop = time.monotonic() + args.seconds

    async def worker(i):
        k = i
        while time.monotonic() < stop:
            k += 1
            ok, why, _ = await one(args, k % 4 != 0)
            if ok:
                counts["ok"] += 1
            else:
                failed[why] = failed.get(why, 0) + 1
                await asyncio.sleep(0.05)

    workers = [asyncio.create_task(worker(i)) for i in range(args.concurrency)]
    t0 = time.monotonic()
    cpu0 = cpu_s(pids)
    samples = []
    while True:
        minute = (time.monotonic() - t0) / 60
        samples.append((round(minute, 2), round(rss_mb(pids), 2)))
        print(f"soak: {minute:5.1f} min  rss {samples[-1][1]:7.1f} MB  ok {counts['ok']}  failed {failed}",
              file=sys.stderr, flush=True)
        if time.monotonic() >= stop:
            break
        await asyncio.sleep(min(args.sample, max(0.0, stop - time.monotonic())))
    await asyncio.gather(*workers)
    minutes = (time.monotonic() - t0) / 60
    # The first sample is taken while the pools and buffers are still filling: the slope is fit
    # from the second minute on (both are reported).
    steady = [p for p in samples if p[0] >= 1.0] or samples
    print(json.dumps({
        "minutes": round(minutes, 2), "concurrency": args.concurrency, "ok": counts["ok"],
        "failed": failed, "rps": round(counts["ok"] / (minutes * 60), 1),
        "cpu_s": round(cpu_s(pids) - cpu0, 1), "rss_mb": samples,
        "slope_mb_per_min": round(slope(steady), 4) if slope(steady) is not None else None,
        "slope_all_mb_per_min": round(slope(samples), 4) if slope(samples) is not None else None,
        "rss_min_mb": min(p[1] for p in steady), "rss_max_mb": max(p[1] for p in steady),
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--chunks", type=int, default=10)
    up.add_argument("--interval", type=float, default=0.5)
    for name in ("burst", "soak"):
        c = sub.add_parser(name)
        c.add_argument("--host", default="127.0.0.1")
        c.add_argument("--port", type=int, required=True)
        c.add_argument("--key", default="")
        c.add_argument("--model", default="m")
        c.add_argument("--pid", required=True, help="process(es) to sample, comma-separated")
        c.add_argument("--timeout", type=float, default=120.0)
        if name == "burst":
            c.add_argument("-n", type=int, default=2000)
        else:
            c.add_argument("--concurrency", type=int, default=200)
            c.add_argument("--seconds", type=float, default=1800)
            c.add_argument("--sample", type=float, default=60)
    args = p.parse_args()
    if args.cmd == "upstream":
        raise_fd_limit()
        asyncio.run(serve_upstream(args))
    else:
        asyncio.run(burst(args) if args.cmd == "burst" else soak(args))


if __name__ == "__main__":
    main()
