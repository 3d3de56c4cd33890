"""The public pages under small limits: an app built with the limits a test names (every other
one far out of reach), a provider with an hourly service, and the forms posted as a browser
posts them (the CSRF cookie and token, the form's own idempotency key)."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from core.uow import Database
from servers.app import create_app
from tests.conftest import Account, running, signup
from tests.portal.conftest import browser, live_server, new_context, page  # noqa: F401  (fixtures)
from tests.support.limiter_clock import limiter_clock_at_window_start

HIGH = "1000000/minute"

Visitor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def one_window() -> Iterator[None]:
    """Every request of a test counts in one window (tests/support/limiter_clock.py)."""
    with limiter_clock_at_window_start():
        yield


@pytest.fixture
def limited(db: Database) -> Visitor:
    """`async with limited(**limits) as http`: a client of an app with those limits."""

    @asynccontextmanager
    async def build(**limits: Any) -> AsyncIterator[httpx.AsyncClient]:
        update = {
            "rate_limit_per_credential": HIGH,
            "rate_limit_per_ip": HIGH,
            "rate_limit_signin_per_ip": HIGH,
            "rate_limit_public_per_ip": HIGH,
            "rate_limit_public_per_target": HIGH,
            **limits,
        }
        app = create_app(db.settings.model_copy(update=update), db=db, run_relay=False)
        transport = httpx.ASGITransport(app=app)
        async with running(app), httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c

    return build


async def provider(http: httpx.AsyncClient) -> tuple[str, str]:
    """A provider open every day 09:00-17:00 UTC with an hourly service: its slug and the
    service's booking page."""
    a, times = await provider_account(http)
    return a.slug, times


async def provider_account(http: httpx.AsyncClient) -> tuple[Account, str]:
    """As `provider`, with the provider's account (to read its bookings over REST)."""
    a = await signup(http, "pub")
    hours = {"time_zone": "UTC", "weekly": ["mon-sun 09:00-17:00"]}
    assert (await http.put("/v1/bookings/availability", json=hours, headers=a.h())).status_code == 200
    service = {"name": "Haircut", "duration_minutes": 60, "price": {"amount": "35", "currency": "EUR"}}
    made = await http.post("/v1/bookings/services", json=service, headers=a.h())
    assert made.status_code == 201, made.text
    return a, f"/book/{a.slug}/{made.json()['id']}"


async def free_starts(http: httpx.AsyncClient, times: str) -> list[str]:
    """The starts next week's times page offers (days ahead, whatever the hour of the run)."""
    week = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    shown = await http.get(times, params={"tz": "UTC", "from": week})
    assert shown.status_code == 200, shown.text[:300]
    return [unquote(html.unescape(s)) for s in re.findall(r'/details\?start=([^&"]+)', shown.text)]


def hidden(html_page: str) -> dict[str, str]:
    """A form page's hidden inputs, by name."""
    return {
        m["name"]: html.unescape(m["value"])
        for m in re.finditer(r'<input type="hidden" name="(?P<name>\w+)" value="(?P<value>[^"]*)"', html_page)
    }


async def details(http: httpx.AsyncClient, times: str, start: str) -> dict[str, str]:
    """The booking form for `start`, as shown: its hidden fields (CSRF token, key)."""
    shown = await http.get(f"{times}/details", params={"start": start, "tz": "UTC"})
    assert shown.status_code == 200, shown.text[:300]
    return hidden(shown.text)


def is_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/html"), response.headers["content-type"]
    assert "problems/" not in response.text
