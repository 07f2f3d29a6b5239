"""Time to first token: N sequential streamed requests on one keep-alive connection (after a
warm-up of min(200, N)), each timed from the request to the first SSE chunk whose delta carries
content. Used by scripts/bench-overhead.sh and scripts/bench-ab.sh, so both measure alike.

Usage: python3 bench/ttft_probe.py PORT PATH N BODY
Prints one JSON line: n, p50_us, p90_us, p99_us, mean_us.
"""
import http.client
import json
import socket
import sys
import time

port, path, n, body = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
conn.connect()
conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
headers = {"content-type": "application/json", "accept": "text/event-stream"}


def once():
    t0 = time.perf_counter_ns()
    conn.request("POST", path, body, headers)
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit(f"status {resp.status}: {resp.read()[:300]!r}")
    first = None
    for line in iter(resp.readline, b""):
        if first is None and line.startswith(b"data:") and not line.startswith(b"data: [DONE]"):
            choices = json.loads(line[5:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                first = time.perf_counter_ns()
    resp.read()  # readline() leaves a Content-Length body "open" at its end; this releases it
    if first is None:
        sys.exit("stream had no content chunk")
    return (first - t0) / 1000


for _ in range(min(200, n)):
    once()
xs = sorted(once() for _ in range(n))
pct = lambda p: xs[min(len(xs) - 1, int(p / 100 * len(xs)))]
print(json.dumps({"n": n, "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99), "mean_us": sum(xs) / len(xs)}))
