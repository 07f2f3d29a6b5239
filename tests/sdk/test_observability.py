"""Observability end to end against the real binary and model: the JSON log line each request
leaves, and the live dashboard in headless Chromium — real traffic must move its numbers.

The browser is Debian's `chromium` driven through `chromium-driver` by selenium (scripts/setup.sh
--test installs both). Set FERROGATE_DASHBOARD_SCREENSHOT=path to keep a screenshot (docs/
dashboard.png was made that way).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

USER = [{"role": "user", "content": "Say hello in three words."}]


def _log_line(log_path: Path, request_id: str, message: str, within: float = 10.0) -> dict:
    """The JSON log line with `request_id` and `message` (logs are written by a background thread)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if request_id not in line:
                continue
            try:
                v = json.loads(line)
            except json.JSONDecodeError:
                continue
            if v.get("message") == message and v.get("request_id") == request_id:
                return v
        time.sleep(0.1)
    raise AssertionError(f"no '{message}' line for {request_id} in {log_path}")


def test_each_request_leaves_a_json_log_line_with_its_metadata(gateway, http: httpx.Client, model: str) -> None:
    rid = f"obs-{uuid.uuid4().hex}"
    secret_prompt = f"my secret prompt {uuid.uuid4().hex}"
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": secret_prompt}]}
    res = http.post("/v1/chat/completions", json=body, headers={"x-request-id": rid})
    assert res.status_code == 200, res.text
    line = _log_line(gateway.log_path, rid, "request settled")
    assert line["model"] == model
    assert line["backend"] == model
    assert line["status"] == 200
    assert line["outcome"] in ("stop", "length")
    assert line["latency_ms"] > 0
    assert line["prompt_tokens"] > 0 and line["completion_tokens"] > 0
    assert line["level"] == "INFO" and "timestamp" in line
    log = gateway.log_path.read_text(errors="replace")
    assert secret_prompt not in log, "prompt text is not logged unless log.prompts = true"


def test_the_log_is_quiet_and_structured(gateway) -> None:
    """llama.cpp's loader chatter stays below INFO, CONT fragments never warn, and fields are
    JSON values (a health label), not Rust Debug text."""
    text = gateway.log_path.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    llama = [line for line in lines if line.get("target") == "llama.cpp"]
    assert all(line["level"] in ("WARN", "ERROR") for line in llama), llama[:5]
    startup = [line for line in lines if line["level"] == "INFO" and "request_id" not in line]
    assert len(startup) < 30, [line["message"] for line in startup]
    for debug_text in ("CONT log", "NotReady(", "Healthy", "LedgerStats {"):
        assert debug_text not in text, debug_text
    health = [line for line in lines if line.get("message") == "backend health changed"]
    assert health and all(h["health"] in ("healthy", "not_ready", "unhealthy") for h in health), health
    ready = [line for line in lines if line.get("message") == "embedded engine ready"]
    assert ready and all(isinstance(line["load_ms"], int) for line in ready), ready


def _wait(what: str, cond, within: float = 20.0):
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not true within {within} s (last: {last!r})")


def test_dashboard_numbers_move_with_real_traffic(gateway, browser, client: openai.OpenAI, model: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{gateway.root_url}/dashboard")
    text = lambda id_: browser.find_element(By.ID, id_).text  # noqa: E731
    _wait("the event stream connects", lambda: text("status") == "live")
    _wait("a first snapshot renders", lambda: text("version").startswith("v"))
    assert int(text("reqs60").split()[0]) >= 0
    # First sight: the chart starts with two minutes of history and labelled axes; the empty
    # tenants panel says why (this gateway has tenancy off).
    points = browser.find_element(By.ID, "sparkline").get_attribute("points").split()
    assert len(points) == 120, points
    assert text("ymax") and "now" in browser.find_element(By.CSS_SELECTOR, ".xaxis").text
    assert "Tenancy is off" in text("tenants"), text("tenants")

    for _ in range(3):
        stream = client.chat.completions.create(model=model, messages=USER, max_tokens=8, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    # The 60 s count can also lose earlier tests' requests meanwhile; the 10 s rate cannot.
    _wait("the request count moves", lambda: int(text("reqs60").split()[0]) >= 3 and float(text("rps")) >= 0.3)
    _wait("TTFT percentiles appear", lambda: text("ttft50") not in ("", "–"))
    # The tables are redrawn with every snapshot (each second): a row element found in one call may
    # be replaced before the next reads it, so each table's rows are read as its text in one call.
    from selenium.common.exceptions import StaleElementReferenceException

    def table_rows(id_: str):
        try:
            return browser.find_element(By.ID, id_).text.splitlines()
        except StaleElementReferenceException:
            return None

    rows = _wait("the live feed lists them", lambda: (r := table_rows("recent")) and len(r) >= 3 and r)
    first = rows[0]
    assert model in first and "200" in first, first
    _wait("tokens/s moves", lambda: float(text("tps")) > 0)
    # One row per backend (the embedding model's too); take the chat model's row.
    engines = _wait("the backends table", lambda: table_rows("backends"))
    engine = next((e for e in engines if e.startswith(model) or f" {model} " in f" {e} "), " | ".join(engines))
    assert model in engine and "healthy" in engine and "/" in engine, engine
    assert "Say hello" not in browser.page_source, "never prompt text"

    shot = os.environ.get("FERROGATE_DASHBOARD_SCREENSHOT")
    if shot:
        assert browser.save_screenshot(shot)
