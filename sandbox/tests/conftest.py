from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tistis_sandbox import SandboxClient, create_app, running_sandbox


@pytest.fixture
def api() -> Iterator[TestClient]:
    """A fresh sandbox per test, called in-process."""
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """One sandbox on a real socket for clients with their own HTTP stack (anthropic SDK)."""
    with running_sandbox() as url:
        yield url


@pytest.fixture
def sandbox(live_url: str) -> Iterator[SandboxClient]:
    with SandboxClient(live_url) as client:
        client.reset()
        yield client
        client.reset()
