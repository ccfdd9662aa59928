"""Doctests of the package (``pytest --doctest-modules llmtraces``) run like the tests: each in
an empty cache of its own, offline, unable to reach anything but the loopback interface."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

# Modules that need an optional extra are not imported for doctests when it is missing (the
# tests that use them skip with the reason).
collect_ignore = [] if importlib.util.find_spec("aiohttp") else ["llmtraces/serve/sim.py"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden`` (or LLMTRACES_UPDATE_GOLDEN=1): rewrite tests/golden/."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the expected export files in tests/golden/ from the writers")


@pytest.fixture(autouse=True)
def _doctest_isolation(request: pytest.FixtureRequest, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not isinstance(request.node, DoctestItem):
        return  # tests/conftest.py isolates the tests
    monkeypatch.setenv("LLMTRACES_HOME", str(tmp_path / "home"))
    for var in ("LLMTRACES_MIRROR", "LLMTRACES_REGISTRY", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in (
                "127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"doctest tried to reach the network: {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)

pytest_plugins = ["pytester"]  # tests/test_api.py runs a downstream suite
