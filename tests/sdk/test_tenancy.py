"""Tenancy as the official openai SDK sees it: stored keys made through the admin API, and each
tenancy refusal mapped to the SDK exception a client catches — an exhausted budget is a
`RateLimitError` with code `insufficient_quota`, a model outside the key's scopes a
`PermissionDeniedError`, a revoked key an `AuthenticationError`.

The gateway here has tenancy on (a master key and a SQLite file in a temp dir) and a backend on a
closed port: every case is decided before a backend is called.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import _stop
from test_errors import USER, _error_body, _start_configured

MASTER = "sdk-test-master-key-0123456789"


@pytest.fixture(scope="module")
def tenancy_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Root URL of a ferrogate with tenancy on; tenant `acme` exists."""
    tmp = tmp_path_factory.mktemp("tenancy")
    rest = f"""
[tenancy]
master_key = "{MASTER}"
database_url = "sqlite://{tmp}/data/ferrogate.db"

[backends.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 200

[deployments.m]
backends = ["up"]

[deployments.other]
backends = ["up"]
"""
    root, proc = _start_configured(tmp, "tenancy", "", rest)
    try:
        res = httpx.post(f"{root}/admin/v1/tenants", json={"name": "acme"}, headers=_master())
        assert res.status_code == 201, res.text
        yield root
    finally:
        _stop(proc)


def _master() -> dict:
    return {"authorization": f"Bearer {MASTER}"}


def _key(root: str, **spec) -> dict:
    res = httpx.post(f"{root}/admin/v1/keys", json={"tenant": "acme", **spec}, headers=_master())
    assert res.status_code == 201, res.text
    return res.json()


def _client(root: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{root}/v1", api_key=key, max_retries=0, timeout=30)


def test_exhausted_budget_is_insufficient_quota(tenancy_gateway: str) -> None:
    key = _key(tenancy_gateway, limits={"tokens_per_day": 0})["key"]
    with _client(tenancy_gateway, key) as c, pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(model="m", messages=USER, max_tokens=4)
    assert info.value.status_code == 429
    assert info.value.code == "insufficient_quota"
    body = _error_body(info.value)
    assert "daily token budget" in body["message"] and "resets at" in body["message"]
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_model_outside_the_scopes_is_permission_denied(tenancy_gateway: str) -> None:
    key = _key(tenancy_gateway, scopes={"models": ["m"]})["key"]
    with _client(tenancy_gateway, key) as c:
        with pytest.raises(openai.PermissionDeniedError) as info:
            c.chat.completions.create(model="other", messages=USER, max_tokens=4)
        assert info.value.code == "model_not_allowed"
        assert _error_body(info.value)["param"] == "model"
        assert [m.id for m in c.models.list()] == ["m"]


def test_revoked_key_is_an_authentication_error(tenancy_gateway: str) -> None:
    created = _key(tenancy_gateway)
    with _client(tenancy_gateway, created["key"]) as c:
        assert [m.id for m in c.models.list()] == ["m", "other"]
        res = httpx.post(
            f"{tenancy_gateway}/admin/v1/keys/{created['id']}/revoke", headers=_master()
        )
        assert res.status_code == 200 and res.json()["status"] == "revoked"
        with pytest.raises(openai.AuthenticationError) as info:
            c.models.list()
        assert info.value.code == "invalid_api_key"
        assert "revoked" in _error_body(info.value)["message"]
        assert created["key"] not in info.value.response.text


def test_the_master_key_is_not_a_client_key(tenancy_gateway: str) -> None:
    with _client(tenancy_gateway, MASTER) as c, pytest.raises(openai.AuthenticationError):
        c.models.list()


def test_dashboard_without_a_key_shows_blanks_not_zeros(tenancy_gateway: str, browser) -> None:
    """With tenancy on the page asks for the master key; until it has one, every tile is blank
    (zeros would read as measurements)."""
    from selenium.webdriver.common.by import By

    browser.get(f"{tenancy_gateway}/dashboard")
    text = lambda id_: browser.find_element(By.ID, id_).text  # noqa: E731
    deadline = time.monotonic() + 20
    while text("status") != "key required" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert text("status") == "key required"
    for tile in ("rps", "reqs60", "active", "lat50", "tps", "tokens60", "errors", "errrate"):
        assert text(tile) == "–", (tile, text(tile))
