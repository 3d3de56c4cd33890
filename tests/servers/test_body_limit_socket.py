"""The 413 for an oversize body over a real socket: a client that writes its whole body before
reading the answer (httpx's default) must read the 413, not a connection reset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import signup
from tests.support.serving import free_port, serving


@pytest.fixture
async def served(app: Any) -> AsyncIterator[str]:
    async with serving(app, free_port(), lifespan="off", ws="none") as url:
        yield url


async def test_an_oversize_body_gets_its_413_over_a_real_socket(
    served: str, client: httpx.AsyncClient, app: Any
) -> None:
    owner = await signup(client, "big")
    limit: int = app.state.settings.max_body_bytes
    body = b'{"name": "' + b"x" * (limit * 4) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with httpx.AsyncClient(base_url=served, timeout=30) as http:
        for _ in range(3):
            declared = await http.post(
                "/v1/clients", content=body, headers={**owner.h(), "content-type": "application/json"}
            )
            assert declared.status_code == 413, declared.text
            assert declared.json()["code"] == "payload_too_large"
            streamed = await http.post(
                "/v1/clients", content=chunks(), headers={**owner.h(), "content-type": "application/json"}
            )
            assert streamed.status_code == 413 and streamed.json()["code"] == "payload_too_large"
        # The connection handling stays healthy afterwards, and nothing was written.
        listed = await http.get("/v1/clients", headers=owner.h())
        assert listed.status_code == 200 and listed.json()["items"] == []
