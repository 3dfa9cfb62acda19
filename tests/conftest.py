"""Fixtures shared by the test modules (pytest finds them here without imports)."""
from __future__ import annotations

import pytest

from http_server import HTTPTestServer


@pytest.fixture
def http_server(monkeypatch):
    """A fresh HTTPTestServer for one test; proxy variables from outside cannot divert requests to it."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    with HTTPTestServer() as server:
        yield server


@pytest.fixture
def rdet_env(monkeypatch, tmp_path):
    """No RDET_* setting or proxy from outside, fast retries, and an empty cache directory (returned)."""
    for var in ("RDET_CACHE", "RDET_ZOO", "RDET_MIRROR", "RDET_OFFLINE", "RDET_RETRIES", "RDET_TIMEOUT",
                "RDET_DEADLINE", "RDET_MIN_RATE", "RDET_RATE_WINDOW", "RDET_LOCK_TIMEOUT",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RDET_BACKOFF", "0.01")
    cache = tmp_path / "cache"
    monkeypatch.setenv("RDET_CACHE", str(cache))
    return cache
