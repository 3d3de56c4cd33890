"""The server the resilience scenarios start, kill and restart: the real app (relay on), plus a
probe handler on `platform/client.created` so a delivered event leaves a visible 'done' row."""

from __future__ import annotations

import asyncio

import uvicorn
from sqlalchemy import text

from core.config import get_settings
from core.events import subscribe
from core.observability import configure_logging
from core.outbox import Event
from core.uow import UnitOfWork
from servers.app import create_app


@subscribe("platform/client.created", name="resilience.client_created")
async def client_created(event: Event, uow: UnitOfWork) -> None:
    # A little work inside the delivery, so a kill can land in the middle of one.
    await asyncio.sleep(0.002)
    await uow.session.execute(text("SELECT 1"))


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
