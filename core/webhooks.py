"""One signature scheme for every webhook in and out: Standard Webhooks (standardwebhooks.com),
through its reference library.

A signed request carries `webhook-id` (the message id; the same on a resend),
`webhook-timestamp` (Unix seconds) and `webhook-signature`: space-separated `v1,<base64
HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>`, one per active key. Keys are `whsec_` +
base64 of 32 random bytes. Rotation: a receiver checks a message against every key it holds
(any match passes); a sender signs with every active key, newest first, so a peer that has not
yet taken the new key keeps verifying during the overlap.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError

__all__ = [
    "ID_HEADER",
    "MAX_TOLERANCE_SECONDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "new_secret",
    "secret_list",
    "signed_headers",
    "verify",
]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# The library refuses timestamps more than five minutes off whatever we configure.
MAX_TOLERANCE_SECONDS = 300

HINT = (
    "sign per Standard Webhooks: send webhook-id, webhook-timestamp (Unix seconds) and "
    "webhook-signature: v1,<base64 HMAC-SHA256(key, '<id>.<timestamp>.<raw body>')>, "
    "with a key that is still active"
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_list(value: str | None) -> list[str]:
    """Keys given in one setting, newest first: separated by commas or whitespace."""
    return [s for s in re.split(r"[\s,]+", value or "") if s]


def signed_headers(keys: Sequence[str], body: bytes, *, message_id: str | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed with every key given."""
    if not keys:
        raise ValueError("no key to sign with")
    msg_id = message_id or f"msg_{uuid.uuid4().hex}"
    now = dt.datetime.now(dt.UTC)
    data = body.decode()
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(int(now.timestamp())),
        SIGNATURE_HEADER: " ".join(Webhook(key).sign(msg_id, now, data) for key in keys),
    }


def verify(keys: Iterable[str], body: bytes, headers: Mapping[str, str], tolerance: int) -> str | None:
    """None when the message is signed by one of `keys` and fresh; else the reason, a stable
    error code: `signature_missing`, `signature_stale` or `signature_invalid`."""
    names = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
    found = {k.lower(): v for k, v in headers.items() if k.lower() in names}
    if len(found) < 3 or not all(found.values()):
        return "signature_missing"
    try:
        sent = int(found[TIMESTAMP_HEADER])
    except ValueError:
        return "signature_invalid"
    # Checked here first so a late message is told `stale`, with our (tighter or equal) window.
    if abs(time.time() - sent) > min(tolerance, MAX_TOLERANCE_SECONDS):
        return "signature_stale"
    for key in keys:
        try:
            Webhook(key).verify(body, found, json_parse=False)
        except (WebhookVerificationError, EmptyWebhookSecretError, ValueError, binascii.Error):
            # ValueError covers a malformed signature list and a body that is not UTF-8.
            continue
        return None
    return "signature_invalid"
