"""The client's conversation (`/c/{token}`): the thread's messages and the reply box; every
rule lives in `core.messaging.conversation`."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core.messaging.conversation import ReplyIn, conversation_reply, conversation_view
from core.uow import Database
from servers.public.form_errors import invalid
from servers.public.guard import check_form
from servers.public.render import csrf_token, render, secure_cookie

__all__ = ["conversation_routes"]

Handler = Callable[[Request], Awaitable[Response]]
REPLIED = "Reply sent."
# How long the client's last message, sent again word for word, is taken for a resent form.
RESENT_WITHIN = dt.timedelta(minutes=15)
# The key of the reply this browser sent last: a form resent as it was is no question to ask.
SENT_COOKIE = "atl_replied"


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _conversation(
    request: Request,
    said: str | None = None,
    error: str | None = None,
    typed: str = "",
    again: dict[str, object] | None = None,
) -> Response:
    """`typed`: the reply the visitor sent when it was refused, shown again to be corrected.
    `again`: a reply that repeats the client's last message, to be confirmed (`at`, `body`,
    `key`)."""
    token = request.path_params["token"]
    c = await conversation_view(_db(request), token)
    return render(
        request,
        "conversation.html",
        status=422 if error else 200,
        private=True,
        title=f"Your conversation with {c.provider}",
        c=c,
        token=token,
        said=said,
        error=error,
        typed=typed,
        again=again,
        csrf=csrf_token(request),
        key=secrets.token_urlsafe(16),
    )


async def conversation_page(request: Request) -> Response:
    said = REPLIED if request.query_params.get("done") == "replied" else None
    return await _conversation(request, said)


async def reply(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    await check_form(request, form)
    token = request.path_params["token"]
    typed = form.get("body", "")
    try:
        data = ReplyIn(body=typed.strip(), key=form.get("key", ""))
    except ValidationError as exc:
        # What is wrong with the reply, said for the visitor; the text kept to be corrected.
        refused = invalid(exc).errors
        why = next((i.message for i in refused if i.field == "body"), None)
        return await _conversation(request, error=why or "Write a reply and send it again.", typed=typed)
    # This very form sent again (its key is the one this browser last sent): core replays it.
    replayed = request.cookies.get(SENT_COOKIE) == data.key
    sent_at = None if replayed else await _just_sent(request, token, data.body)
    if sent_at is not None and form.get("confirm") != "yes":
        # Maybe Back and Send again, maybe meant: asked, never silently dropped. The confirm form
        # carries this form's key (unused so far), so confirming twice still stores one.
        again = {"at": sent_at, "body": data.body, "key": data.key}
        return await _conversation(request, again=again)
    await conversation_reply(_db(request), token, data)
    done = RedirectResponse(f"/c/{token}?done=replied", status_code=303)
    done.set_cookie(
        SENT_COOKIE,
        data.key,
        max_age=int(RESENT_WITHIN.total_seconds()),
        path="/c/",
        httponly=True,
        samesite="lax",
        secure=secure_cookie(request),
    )
    return done


async def _just_sent(request: Request, token: str, body: str) -> dt.datetime | None:
    """When the client sent these words as their last message, moments ago; None when this
    reply is not that. The page is never cached, so Back shows a fresh form (a fresh key) while
    the browser restores the text: the key alone cannot tell this resend from a new reply. The
    same words after an answer, or later, are a new message."""
    messages = (await conversation_view(_db(request), token)).messages
    if not messages or not messages[-1].from_client or messages[-1].body != body:
        return None
    last = messages[-1].at
    return last if dt.datetime.now(dt.UTC) - last < RESENT_WITHIN else None


def conversation_routes(guarded: Callable[[Handler], Handler]) -> list[BaseRoute]:
    """`guarded`: the pages' wrapper that turns core's refusals into pages."""
    return [
        Route("/c/{token}", guarded(conversation_page), methods=["GET"]),
        Route("/c/{token}", guarded(reply), methods=["POST"]),
    ]
