#!/usr/bin/env python3
"""Summarize a flat perf profile (`perf report --no-children --sort symbol -g none --stdio`):
the share of samples by component, then the top symbols, as markdown. Used by
scripts/bench-overhead.sh --profile.

Usage: profile-summary.py PERF_REPORT.txt
"""
import re
import sys

# (component, pattern on the symbol), first match wins; kernel symbols are tagged [k] by perf.
COMPONENTS = [
    ("allocator", re.compile(r"malloc|free|realloc|calloc|^mi_|_mi_|je_|arena|tcache|sdallocx|__rust_(alloc|dealloc|realloc)")),
    ("memcpy/memmove", re.compile(r"mem(cpy|move|set|cmp)|__memcpy|__memmove")),
    ("tokio (runtime, timers, I/O driver)", re.compile(r"tokio::|mio::")),
    ("hyper / h2 (HTTP)", re.compile(r"hyper::|hyper_util::|h2::|httparse::")),
    ("axum / tower / http types", re.compile(r"axum::|tower::|tower_http::|http::|http_body")),
    ("serde / JSON", re.compile(r"serde_json::|serde::|serde_core::|ryu::|itoa::")),
    ("tracing / logging", re.compile(r"tracing::|tracing_core::|tracing_subscriber::|opentelemetry")),
    ("ferrogate", re.compile(r"ferrogate")),
    ("futures / bytes / std", re.compile(r"futures|bytes::|core::|alloc::|std::|hashbrown|<.* as ")),
]


def component(kind: str, symbol: str) -> str:
    if kind == "k":
        return "kernel (syscalls, TCP, scheduler)"
    for name, pattern in COMPONENTS:
        if pattern.search(symbol):
            return name
    return "other (libc, unresolved)"


def main(path: str) -> None:
    rows = []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*)", line)
        if m:
            # perf pads the symbol column and may print more columns after it ("-" when empty).
            symbol = re.split(r"\s{2,}", m.group(3).strip())[0]
            rows.append((float(m.group(1)), m.group(2), symbol))
    if not rows:
        print("(no samples)")
        return
    shares: dict[str, float] = {}
    for pct, kind, sym in rows:
        c = component(kind, sym)
        shares[c] = shares.get(c, 0.0) + pct
    listed = sum(p for p, _, _ in rows)
    print("| component | share of samples |")
    print("|---|---:|")
    for c, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {c} | {pct:.1f}% |")
    print(f"| (symbols below the report's limit) | {max(0.0, 100 - listed):.1f}% |")
    print()
    print("| top symbols | share |")
    print("|---|---:|")
    for pct, kind, sym in sorted(rows, key=lambda r: -r[0])[:15]:
        short = sym if len(sym) <= 110 else sym[:107] + "..."
        print(f"| `{short}`{' (kernel)' if kind == 'k' else ''} | {pct:.1f}% |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
