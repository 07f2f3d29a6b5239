"""The measuring client of scripts/bench-batch.sh (issue 19's benchmark).

Against one running gateway (tenancy on, the embedded model): makes a tenant and a key, then
1. "alone": interactive streaming chat requests arriving at a fixed rate (open loop) for
   BENCH_SECS; their time to first token;
2. uploads a BENCH_LINES-line batch (BENCH_BATCH_MAX_TOKENS each), creates it, and runs the same
   interactive load again while the batch runs ("with batch"); the lines the batch completed
   during that window say how much capacity it took;
3. waits for the batch to finish: its wall time and lines/s with and without interactive traffic.

Prints one JSON object (the report's figures) on stdout; progress on stderr.
"""

import asyncio
import json
import os
import random
import statistics
import sys
import time

import httpx

BASE = sys.argv[1]
MASTER = sys.argv[2]
SECS = float(os.environ.get("BENCH_SECS", "60"))
RATE = float(os.environ.get("BENCH_RATE", "1"))
LINES = int(os.environ.get("BENCH_LINES", "1000"))
MAX_TOKENS = int(os.environ.get("BENCH_MAX_TOKENS", "16"))
BATCH_MAX_TOKENS = int(os.environ.get("BENCH_BATCH_MAX_TOKENS", "8"))
# Longest wait for the rest of the batch after the measured window (the rate is then partial).
REST_MAX = float(os.environ.get("BENCH_REST_MAX", "300"))
MODEL = "smollm2"

TOPICS = ["the sea", "a clock", "bread", "a violin", "winter", "a bridge", "tea", "a map", "rain", "a lamp"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * len(xs) + 0.5) - 1))
    return xs[k]


async def admin(http, method, path, body=None):
    r = await http.request(method, f"{BASE}{path}", json=body, headers={"authorization": f"Bearer {MASTER}"})
    r.raise_for_status()
    return r.json()


async def one_interactive(http, key, n):
    """One streamed chat request: (ttft seconds or None, error or None)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Say one short sentence about {TOPICS[n % len(TOPICS)]} ({n})."}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.7,
        "stream": True,
    }
    start = time.perf_counter()
    try:
        async with http.stream(
            "POST", f"{BASE}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        ) as r:
            if r.status_code != 200:
                return None, f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
            ttft = None
            async for line in r.aiter_lines():
                if ttft is None and line.startswith("data: ") and line[6:] != "[DONE]":
                    chunk = json.loads(line[6:])
                    if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                        ttft = time.perf_counter() - start
            return ttft, None if ttft is not None else "no content"
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}: {e}"


async def interactive_load(http, key, label):
    """Open-loop arrivals at RATE/s (Poisson) for SECS; every request's TTFT."""
    tasks, n = [], 0
    end = time.perf_counter() + SECS
    rng = random.Random(7)
    while time.perf_counter() < end:
        tasks.append(asyncio.create_task(one_interactive(http, key, n)))
        n += 1
        await asyncio.sleep(rng.expovariate(RATE))
    results = await asyncio.gather(*tasks)
    ttfts = [t * 1000 for t, e in results if t is not None]
    errors = [e for t, e in results if e is not None]
    if errors:
        log(f"{label}: {len(errors)} errors, e.g. {errors[0]}")
    row = {
        "requests": len(results),
        "errors": len(errors),
        "ttft_p50_ms": round(statistics.median(ttfts), 1) if ttfts else None,
        "ttft_p99_ms": round(pct(ttfts, 99), 1) if ttfts else None,
        "ttft_max_ms": round(max(ttfts), 1) if ttfts else None,
    }
    log(f"{label}: {row}")
    return row


async def batch_status(http, key, bid):
    r = await http.get(f"{BASE}/v1/batches/{bid}", headers={"authorization": f"Bearer {key}"})
    r.raise_for_status()
    return r.json()


async def main():
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=httpx.Limits(max_connections=200)) as http:
        tenant = f"bench-{int(time.time())}"
        await admin(http, "POST", "/admin/v1/tenants", {"name": tenant, "limits": {}})
        key = (await admin(http, "POST", "/admin/v1/keys", {"tenant": tenant, "name": "bench"}))["key"]
        for i in range(3):  # warm the engine and the connection pool
            await one_interactive(http, key, 1000 + i)

        alone = await interactive_load(http, key, "interactive alone")

        lines = [
            json.dumps({
                "custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": MODEL, "max_tokens": BATCH_MAX_TOKENS, "temperature": 0.7,
                         "messages": [{"role": "user", "content": f"Name a colour for item {i}."}]},
            })
            for i in range(LINES)
        ]
        files = {"file": ("batch.jsonl", ("\n".join(lines) + "\n").encode(), "application/jsonl")}
        r = await http.post(f"{BASE}/v1/files", data={"purpose": "batch"}, files=files,
                            headers={"authorization": f"Bearer {key}"})
        r.raise_for_status()
        body = {"input_file_id": r.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        r = await http.post(f"{BASE}/v1/batches", json=body, headers={"authorization": f"Bearer {key}"})
        r.raise_for_status()
        bid, batch_started = r.json()["id"], time.perf_counter()
        await asyncio.sleep(2)  # let the workers fill their slots
        before = (await batch_status(http, key, bid))["request_counts"]
        window_start = time.perf_counter()
        with_batch = await interactive_load(http, key, "interactive with batch")
        window = time.perf_counter() - window_start
        after = await batch_status(http, key, bid)
        during = after["request_counts"]["completed"] + after["request_counts"]["failed"] \
            - before["completed"] - before["failed"]
        still_running = after["status"] == "in_progress"
        if not still_running:
            log("warning: the batch finished before the interactive window ended: raise BENCH_LINES")

        # The rest of the batch alone: its rate without interactive traffic.
        rest_start, rest_before = time.perf_counter(), after["request_counts"]
        while True:
            b = await batch_status(http, key, bid)
            if b["status"] in ("completed", "failed", "cancelled", "expired"):
                break
            if time.perf_counter() - rest_start > REST_MAX:
                log(f"the batch is still {b['status']} after {REST_MAX:.0f} s alone: its rate so far is reported")
                break
            await asyncio.sleep(1)
        rest = time.perf_counter() - rest_start
        c = b["request_counts"]
        rest_lines = c["completed"] + c["failed"] - rest_before["completed"] - rest_before["failed"]
        print(json.dumps({
            "alone": alone,
            "with_batch": with_batch,
            "batch": {
                "status": b["status"], "request_counts": c, "wall_s": round(time.perf_counter() - batch_started, 1),
                "lines_per_s_with_interactive": round(during / window, 2),
                "lines_per_s_alone": round(rest_lines / rest, 2) if rest > 1 and rest_lines else None,
                "running_through_window": still_running,
            },
        }))


asyncio.run(main())
