"""The README's "Using it" examples, run as written against `make run`'s configuration
(config/ferrogate.toml: both embedded models, their max_tokens caps) on a free port: every curl
command answers 200 and every example finishes within a bound, and so does the Python SDK
example. A request without max_tokens ends at the config's cap (256), in seconds, not at the
2,048-token context.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, _binary, _free_port, _stop, _tail, _wait_ready

README = REPO / "README.md"
CONFIG = REPO / "config" / "ferrogate.toml"
CAP = 256
EXAMPLE_TIMEOUT = 90.0


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _curl_commands(block: str) -> list[str]:
    """Each `curl …` command, with its continuation lines (a JSON body over several lines)."""
    commands: list[str] = []
    for line in block.splitlines():
        if line.startswith("curl "):
            commands.append(line)
        elif commands and line.strip() and not line.startswith("#"):
            commands[-1] += "\n" + line
    return commands


def _readme_using_it() -> str:
    return _section(README.read_text(), "Using it")


CURLS = [c for b in _blocks(_readme_using_it(), "sh") for c in _curl_commands(b)]
PYTHONS = _blocks(_readme_using_it(), "python")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ferrogate serving config/ferrogate.toml as `make run` does, on a free port."""
    tmp = tmp_path_factory.mktemp("readme")
    port = _free_port()
    log_path = tmp / "ferrogate.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(_binary()), "serve", "--config", str(CONFIG), "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    root = f"http://127.0.0.1:{port}"
    why = _wait_ready(proc, root, 180.0)
    if why is not None:
        _stop(proc)
        raise RuntimeError(f"ferrogate did not start: {why}\n{_tail(log_path, 40)}")
    yield root
    _stop(proc)


def _local(text: str, root: str) -> str:
    return text.replace("http://127.0.0.1:8080", root)


def test_the_readme_has_examples() -> None:
    assert len(CURLS) >= 4 and len(PYTHONS) >= 1, (CURLS, PYTHONS)
    for example in [*CURLS, *PYTHONS]:
        if "/embeddings" in example or "embeddings.create" in example:
            continue  # embeddings generate nothing: no max_tokens to bound
        assert "max_tokens" in example, f"an example without max_tokens:\n{example}"


@pytest.mark.parametrize("command", CURLS, ids=[c.split("\n")[0][:60] for c in CURLS])
def test_readme_curl_example_answers_200(demo: str, command: str) -> None:
    # --fail-with-body: curl exits 22 on a 4xx/5xx; -w prints the status after the body.
    run = _local(command, demo).replace("curl ", "curl -w '\\n%{http_code}' --fail-with-body ", 1)
    out = subprocess.run(
        ["bash", "-c", run], capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT, check=False
    )
    assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
    assert out.stdout.rstrip().endswith("200"), out.stdout
    if '"stream": true' in command or "/stream" in command:
        assert "[DONE]" in out.stdout, out.stdout


@pytest.mark.parametrize("source", PYTHONS)
def test_readme_python_example_finishes(demo: str, source: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _local(source, demo)],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "completion_tokens" in out.stdout, out.stdout


@pytest.mark.parametrize("model", ["smollm2", "gemma3", "default", "auto"])
def test_a_request_without_max_tokens_stops_at_the_demo_cap(demo: str, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Write a very long story."}]}
    res = httpx.post(f"{demo}/v1/chat/completions", json=body, timeout=EXAMPLE_TIMEOUT)
    assert res.status_code == 200, res.text
    assert res.json()["usage"]["completion_tokens"] <= CAP, res.json()["usage"]
