"""One set of secrets per database, however many processes share it.

The JWT secret signs every token and the identity secret keys every polyseme id. Two processes
on one database with different ones split silently: tokens minted by one are refused by the
other, and one client gets two ids. So the first process to use the secrets records their
fingerprints in the database (migration `security_0002`), and every process compares its own
before it serves; a difference refuses to start, naming the setting and the fix. Rotating a
secret on purpose is `atlilith migrate --rebind-secrets`, run with the new one.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from core.config import Settings
from core.observability import get_logger

if TYPE_CHECKING:
    from core.uow import Database

log = get_logger("atlilith.secrets")

_BIND_SQL = text("SELECT platform.bind_secret(:name, :fingerprint)")


@dataclass(frozen=True)
class BoundSecret:
    name: str  # the fingerprint row's name
    setting: str  # the environment variable that configures it
    file: str  # the file in the data dir holding a generated one (dev, test)
    consequence: str  # what rotating it on purpose costs


JWT = BoundSecret(
    "jwt_secret",
    "ATLILITH_JWT_SECRET",
    "jwt-secret",
    "access tokens and links signed with the old one stop working",
)
IDENTITY = BoundSecret(
    "identity_secret",
    "ATLILITH_IDENTITY_SECRET",
    "identity-secret",
    "every client's polyseme id changes",
)
BOUND = (JWT, IDENTITY)


class SecretMismatch(RuntimeError):
    """This process's secret is not the one the database was set up with."""

    code = "secret_mismatch"

    def __init__(self, secret: BoundSecret, settings: Settings) -> None:
        if getattr(settings, secret.name):
            source = f"the configured {secret.setting}"
        else:
            source = f"{settings.data_dir.resolve() / secret.file} ({secret.setting} unset)"
        super().__init__(
            f"{self.code}: {secret.setting} differs from the one this database was set up with"
            f" (this process uses {source}); processes sharing a database must share it. Fix: give"
            f" every process the same {secret.setting} (in development, the same ATLILITH_DATA_DIR)"
            f" and start again. To rotate it on purpose ({secret.consequence}), stop every process"
            " and run `atlilith migrate --rebind-secrets` with the new one."
        )
        self.secret = secret


def fingerprint(secret: BoundSecret, value: str) -> str:
    """An HMAC keyed by the secret over its name: equal secrets give equal fingerprints, and
    the secret cannot be read back from one."""
    message = b"atlilith secret fingerprint\x00" + secret.name.encode()
    return hmac.new(value.encode(), message, hashlib.sha256).hexdigest()


def _value(secret: BoundSecret, settings: Settings) -> str:
    return settings.resolved_jwt_secret() if secret is JWT else settings.resolved_identity_secret()


async def verify_secrets(db: Database) -> bool:
    """Record this process's secrets if the database has none yet, else check they are the
    recorded ones: raises `SecretMismatch` on a difference. False when the database could not
    be asked (down, or not migrated yet): the caller starts anyway, as it does for the
    registry, and the check runs at the next start."""
    settings = db.settings
    try:
        async with db.system_engine.begin() as conn:
            for secret in BOUND:
                params = {"name": secret.name, "fingerprint": fingerprint(secret, _value(secret, settings))}
                if not (await conn.execute(_BIND_SQL, params)).scalar_one():
                    raise SecretMismatch(secret, settings)
    except (OSError, DBAPIError) as exc:
        log.warning("secrets_not_verified", reason=type(exc).__name__)
        return False
    return True


def rebind_secrets(sync_conn: Connection, settings: Settings) -> None:
    """Forget the recorded fingerprints and record this process's: an operator rotating a
    secret on purpose (`atlilith migrate --rebind-secrets`), as the owner."""
    sync_conn.execute(
        text("DELETE FROM platform_private.secret_fingerprints WHERE name = ANY(:names)"),
        {"names": [s.name for s in BOUND]},
    )
    for secret in BOUND:
        sync_conn.execute(
            _BIND_SQL, {"name": secret.name, "fingerprint": fingerprint(secret, _value(secret, settings))}
        )
    log.warning("secrets_rebound", secrets=[s.setting for s in BOUND])
