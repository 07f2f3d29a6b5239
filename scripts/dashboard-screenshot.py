#!/usr/bin/env python3
"""docs/dashboard.png from `make run`'s two-model setup: serves config/ferrogate.toml on a free
port, sends a little traffic to smollm2, gemma3, default and auto, and screenshots /dashboard in
headless Chromium (selenium, as tests/sdk/test_observability.py does).

Usage: .venv/bin/python scripts/dashboard-screenshot.py [BINARY] (default target/debug/ferrogate)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "target/debug/ferrogate")
    root = f"http://127.0.0.1:{free_port()}"
    cmd = [binary, "serve", "--config", str(REPO / "config/ferrogate.toml"), "--listen", root[7:]]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=root, timeout=120) as http:
            while not _ready(http):
                time.sleep(0.5)
            opts = webdriver.ChromeOptions()
            opts.binary_location = shutil.which("chromium") or "chromium"
            for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,900"):
                opts.add_argument(arg)
            browser = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
            browser.get(f"{root}/dashboard")
            for i, model in enumerate(["smollm2", "gemma3", "default", "auto", "smollm2", "auto"] * 2):
                body = {"model": model, "max_tokens": 24, "stream": i % 2 == 0,
                        "messages": [{"role": "user", "content": "Name three colours."}]}
                http.post("/v1/chat/completions", json=body)
                time.sleep(1)
            time.sleep(2)
            browser.save_screenshot(str(REPO / "docs/dashboard.png"))
            browser.quit()
    finally:
        proc.terminate()
        proc.wait()


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/ready").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
