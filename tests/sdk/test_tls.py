"""HTTPS on the gateway's own listener (`[server.tls]`), as real clients see it: the official
openai SDK (plain and streamed) over HTTPS with the test CA, and curl negotiating HTTP/2 by ALPN
and refusing a server it cannot verify. Certificates are made here with the openssl CLI.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import MODEL, _binary, _free_port, _model_path, _stop, _tail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(d: Path) -> None:
    """ca.pem (a private CA), cert.pem + key.pem (127.0.0.1 and localhost, signed by it)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=ferrogate sdk test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", *ec, "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "leaf.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "cert.pem", "-days", "2", "-extfile", "leaf.ext", cwd=d)


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(https root URL, CA file) of a ferrogate serving the embedded model over HTTPS."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make the test certificates")
    tmp = tmp_path_factory.mktemp("tls")
    _make_pki(tmp)
    ca = tmp / "ca.pem"
    port = _free_port()
    config = tmp / "ferrogate.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[server.tls]\ncert_file = "{tmp / "cert.pem"}"\nkey_file = "{tmp / "key.pem"}"\n'
        f'[backends.{MODEL}]\nkind = "embedded"\nmodel_path = "{_model_path()}"\nthreads = 1\n'
        f'[deployments.{MODEL}]\nbackends = ["{MODEL}"]\n'
    )
    log_path = tmp / "ferrogate.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(_binary()), "serve", "--config", str(config)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    root = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=2) as http:
            while True:
                assert proc.poll() is None, f"ferrogate exited:\n{_tail(log_path, 40)}"
                try:
                    if http.get(f"{root}/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"not ready over HTTPS:\n{_tail(log_path, 40)}"
                time.sleep(0.1)
        yield root, ca
    finally:
        _stop(proc)


def test_the_openai_sdk_over_https(tls_gateway: tuple[str, Path]) -> None:
    root, ca = tls_gateway
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as http:
        client = openai.OpenAI(base_url=f"{root}/v1", api_key="unused", http_client=http, max_retries=0)
        r = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
        )
        assert r.choices[0].message.content
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Count"}], max_tokens=8, stream=True
            )
            if c.choices
        ]
        assert "".join(pieces)


def test_the_openai_sdk_refuses_an_unverified_gateway(tls_gateway: tuple[str, Path]) -> None:
    root, _ = tls_gateway
    client = openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0, timeout=10)
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


def test_curl_negotiates_http2_and_checks_the_certificate(tls_gateway: tuple[str, Path]) -> None:
    root, ca = tls_gateway
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for this test")
    ok = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
         f"{root}/health"],
        capture_output=True, text=True, timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "2 200", ok.stdout
    untrusted = subprocess.run(["curl", "-sS", "-o", "/dev/null", f"{root}/health"],
                               capture_output=True, text=True, timeout=30)
    assert untrusted.returncode == 60, (untrusted.returncode, untrusted.stderr)  # peer certificate not verified
    # Plain HTTP to the TLS port: a clear 400.
    plain = subprocess.run(["curl", "-sS", root.replace("https://", "http://") + "/health"],
                           capture_output=True, text=True, timeout=30)
    assert "HTTPS" in plain.stdout, (plain.stdout, plain.stderr)
