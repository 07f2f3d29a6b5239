#!/usr/bin/env python3
"""Embedding throughput load (scripts/bench-embed.sh runs it): POST /v1/embeddings with `batch`
inputs per request from `clients` threads over kept-alive connections, for a fixed number of
requests after a warm-up; prints one JSON object per level: embeddings/s, requests/s, latency
p50/p95, failures. Standard library only.

Usage: bench_embed.py URL MODEL LABEL LEVEL... (LEVEL = batch x clients x requests, e.g. 32x1x20)
"""

import http.client
import json
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

SENTENCES = [
    "A man is playing a guitar on the street corner.",
    "The quarterly report shows revenue grew by twelve percent.",
    "How do I reset my password if I forgot my email address?",
    "Children are playing football in the yard after school.",
    "The new phone has a larger screen and a better camera.",
    "It will rain heavily in the northern regions tomorrow.",
    "She ordered a bowl of pasta with tomato sauce and basil.",
    "The spacecraft entered a stable orbit around Mars last night.",
]


def inputs(batch, salt):
    return [f"{SENTENCES[(salt + i) % len(SENTENCES)]} ({salt}-{i})" for i in range(batch)]


def worker(url, model, batch, count, salt0, lat, errors):
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    for n in range(count):
        body = json.dumps({"model": model, "input": inputs(batch, salt0 + n), "encoding_format": "float"})
        t = time.perf_counter()
        try:
            conn.request("POST", "/v1/embeddings", body, {"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200 or len(json.loads(data)["data"]) != batch:
                errors.append(f"HTTP {resp.status}: {data[:200]!r}")
                continue
        except (OSError, http.client.HTTPException, ValueError) as e:
            errors.append(repr(e))
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
            continue
        lat.append(time.perf_counter() - t)
    conn.close()


def level(url, model, batch, clients, requests):
    worker(url, model, batch, 3, 10**6, [], [])  # warm-up
    lat, errors, threads = [], [], []
    per = max(1, requests // clients)
    start = time.perf_counter()
    for c in range(clients):
        t = threading.Thread(target=worker, args=(url, model, batch, per, c * 10**4, lat, errors))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
    return {
        "batch": batch,
        "clients": clients,
        "requests": len(lat),
        "failed": len(errors),
        "errors": errors[:3],
        "embeddings_per_s": round(len(lat) * batch / wall, 1),
        "requests_per_s": round(len(lat) / wall, 2),
        "p50_ms": round(q(0.5), 2),
        "p95_ms": round(q(0.95), 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
    }


def main(argv):
    if len(argv) < 5:
        sys.exit(__doc__)
    url, model, label = argv[1:4]
    for spec in argv[4:]:
        batch, clients, requests = (int(x) for x in spec.split("x"))
        r = level(url, model, batch, clients, requests)
        r["server"] = label
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main(sys.argv)
