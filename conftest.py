"""For every test and doctest: no connection beyond the loopback interface; each doctest in an
empty cache of its own (``pytest --doctest-modules llmtraces``; tests/conftest.py gives each
test one); ``--update-golden``."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

# The fake NVML is a module named ``pynvml``: importing it for doctests would put it in
# sys.modules in place of the real one for every later test (tests put it on sys.path).
collect_ignore = ["tests/fake_nvml"]
# Modules that need an optional extra are not imported for doctests when it is missing (the
# tests that use them skip with the reason).
_EXTRAS = {"aiohttp": ["llmtraces/serve/sim.py", "llmtraces/serve/sim_request.py"],
           "scipy": ["llmtraces/characterize"], "sklearn": ["llmtraces/forecasting"]}
collect_ignore += [path for module, paths in _EXTRAS.items()
                   if importlib.util.find_spec(module) is None for path in paths]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden`` (or LLMTRACES_UPDATE_GOLDEN=1): rewrite tests/golden/."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the expected export files in tests/golden/ from the writers")


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test or doctest that tries to connect anywhere but the loopback interface."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in (
                "127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"tried to reach the network: {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _doctest_isolation(request: pytest.FixtureRequest, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A doctest's own empty cache (tests/conftest.py gives each test one)."""
    if not isinstance(request.node, DoctestItem):
        return
    monkeypatch.setenv("LLMTRACES_HOME", str(tmp_path / "home"))
    for var in ("LLMTRACES_MIRROR", "LLMTRACES_REGISTRY", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


pytest_plugins = ["pytester"]  # tests/test_api.py runs a downstream suite
