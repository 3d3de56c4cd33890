"""Messaging: the provider-client inbox, inbound ingest from peers, outbound messages, agent
drafts that a person approves, and the per-thread agent mode that decides what agents may do.

Every rule lives once in the modules below; REST routes and MCP tools call the operations listed
in `__all__`. "Agent" means a request authenticated with an API key or OAuth; a session token is a
person. Agent mode binds agents only: a person may always send, and approving a draft is always a
person's act.
"""

from __future__ import annotations

from core.messaging.conversation import client_link, revoke_client_link
from core.messaging.drafting import generate_draft
from core.messaging.drafts import approve_draft, create_draft, get_draft, list_drafts, reject_draft
from core.messaging.ingest import ingest
from core.messaging.messages import mark_read, retry_delivery, send_message
from core.messaging.settings import get_settings, update_settings
from core.messaging.threads import (
    ThreadFilter,
    count_threads,
    create_thread,
    get_thread,
    list_threads,
    update_thread,
    wake_snoozed_threads,
)

__all__ = [
    "ThreadFilter",
    "approve_draft",
    "client_link",
    "count_threads",
    "create_draft",
    "create_thread",
    "generate_draft",
    "get_draft",
    "get_settings",
    "get_thread",
    "ingest",
    "list_drafts",
    "list_threads",
    "mark_read",
    "reject_draft",
    "retry_delivery",
    "revoke_client_link",
    "send_message",
    "update_settings",
    "update_thread",
    "wake_snoozed_threads",
]
