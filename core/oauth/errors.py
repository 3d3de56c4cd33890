"""Errors of the OAuth feature."""

from __future__ import annotations

from core.errors import DomainError


class OAuthError(DomainError):
    """A refusal in OAuth's own vocabulary: `code` is the RFC 6749/7591/8707 error code
    (`invalid_request`, `invalid_grant`, `invalid_target`, ...), passed on as is by the
    authorization server's endpoints."""

    status = 400
    default_code = "invalid_request"
    title = "OAuth request refused"
