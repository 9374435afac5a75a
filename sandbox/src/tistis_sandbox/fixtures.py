"""pytest fixtures for suites that talk to the sandbox: import them into a conftest
(the root pyproject loads this module as a pytest plugin)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tistis_sandbox.client import AsyncSandboxClient
from tistis_sandbox.recorder import Recorder
from tistis_sandbox.server import running_sandbox


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """One sandbox on a real socket for the whole session, with the demo brain answering the
    assistant's tools (scripted steps still win)."""
    with running_sandbox(recorder=Recorder(demo_brain=True)) as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[AsyncSandboxClient]:
    """Its controls, with recordings, scripts and faults cleared before and after each test."""
    async with AsyncSandboxClient(sandbox_url) as client:
        await client.reset()
        yield client
        await client.reset()
