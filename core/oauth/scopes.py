"""OAuth scopes: the API keys' vocabulary (`<feature>:read|write`, `<feature>:*`) and `*`."""

from __future__ import annotations

from core.context import ALL_SCOPES, known_scopes
from core.oauth.errors import OAuthError


def supported_scopes() -> list[str]:
    """`*` (everything the person may do) and the scope vocabulary of API keys, with each
    feature's `<feature>:*`."""
    known = known_scopes()
    features = sorted({name.partition(":")[0] for name in known})
    return [ALL_SCOPES, *known, *(f"{f}:*" for f in features)]


def scope_descriptions(scopes: list[str]) -> list[tuple[str, str]]:
    known = known_scopes()
    described = []
    for scope in scopes:
        if scope == ALL_SCOPES:
            described.append((scope, "act as you in the context you choose: everything you may do there"))
        elif scope.endswith(":*"):
            described.append((scope, f"everything in {scope.removesuffix(':*')}"))
        else:
            described.append((scope, known.get(scope, scope)))
    return described


def check_scopes(scopes: list[str] | None) -> list[str]:
    if not scopes:
        return [ALL_SCOPES]
    supported = set(supported_scopes())
    unknown = [s for s in scopes if s not in supported]
    if unknown:
        raise OAuthError(f"unknown scopes: {' '.join(unknown)}", code="invalid_scope")
    return sorted(set(scopes))
