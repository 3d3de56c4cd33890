from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.cli.live import Cli, LiveServer


@pytest.fixture
def atl(tmp_path: Path, live: LiveServer) -> Cli:
    return Cli(tmp_path / "atlilith-config", live.url)


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the live server, for setting up people and orgs over the wire."""
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as c:
        yield c
