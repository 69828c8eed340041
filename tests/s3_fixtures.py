"""A real S3 API server on loopback for the object-storage tests: moto's server, its own process.

Import the fixtures into a test module (``from s3_fixtures import s3_server, s3_store``).
The server listens on 127.0.0.1 only, on a free port, and is stopped at teardown.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "featstore-test-key",
    "AWS_SECRET_ACCESS_KEY": "featstore-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start ``python -m moto.server`` on 127.0.0.1; yields its endpoint URL."""
    port = _free_port()
    env = {**os.environ, **DUMMY_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not answer within 60 s")
            time.sleep(0.2)
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy AWS credentials in the environment (the standard way s3fs finds them)."""
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return dict(DUMMY_ENV)


def make_bucket(endpoint: str, **options: Any) -> str:
    """A fresh bucket on the server; returns its name."""
    import s3fs

    fs = s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True, **options
    )
    bucket = f"featstore-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return bucket


@pytest.fixture
def s3_store(s3_server: str, s3_env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(url, storage_options) of a store location in a fresh bucket; credentials from the env."""
    bucket = make_bucket(s3_server)
    return f"s3://{bucket}/team.zarr", {"client_kwargs": {"endpoint_url": s3_server}}


@pytest.fixture(params=["local", "memory", "s3"])
def store_location(request: pytest.FixtureRequest, tmp_path) -> tuple[str, Any]:
    """(url, storage_options) of a fresh store on each backend that keeps small objects
    atomically (leases, name claims): a local folder, fsspec's memory://, and moto S3."""
    if request.param == "local":
        return str(tmp_path / "s.zarr"), None
    if request.param == "memory":
        return f"memory://objects-{uuid.uuid4().hex}/s.zarr", None
    return request.getfixturevalue("s3_store")
