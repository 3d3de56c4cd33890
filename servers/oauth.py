"""The OAuth 2.1 authorization server for MCP hosts (MCP authorization, 2025-11-25), built on the
MCP SDK's handlers: RFC 8414 metadata, `/authorize` (PKCE S256), `/token` (codes once, refresh
rotation), `/register` (RFC 7591), `/revoke` (RFC 7009), client ID metadata documents.

The rules live in `core.oauth`; this module maps them to the SDK's provider protocol. Two SDK
parts are replaced: client authentication, because we keep only a hash of client secrets, and
the token endpoint's entry, to refuse a `resource` other than our MCP endpoint (RFC 8707). The
authorize step sends the browser to the portal's consent page, which signs the person in first:
one door for people and agents (docs/oauth.md)."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, get_args
from urllib.parse import unquote

from mcp.server.auth.handlers.authorize import AuthorizationHandler
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.handlers.register import RegistrationHandler
from mcp.server.auth.handlers.revoke import RevocationHandler
from mcp.server.auth.handlers.token import TokenErrorResponse, TokenHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationErrorCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    RegistrationError,
    RegistrationErrorCode,
    TokenError,
    TokenErrorCode,
)
from mcp.server.auth.routes import build_metadata, cors_middleware, validate_issuer_url
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, RequestBodyLimitMiddleware
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl, ConfigDict, TypeAdapter, ValidationError
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp

from core.oauth import authorization as oauth
from core.oauth import clients
from core.oauth.errors import OAuthError
from core.oauth.scopes import supported_scopes
from core.observability import get_logger
from core.uow import Database
from core.utilities import sha256_hex

log = get_logger("atlilith.oauth")

__all__ = ["CoreOAuthProvider", "oauth_routes"]

METADATA_PATH = "/.well-known/oauth-authorization-server"
# What `/token` grants (the metadata's `grant_types_supported` says the same).
GRANT_TYPES = ("authorization_code", "refresh_token")


class StoredClient(OAuthClientInformationFull):
    """A client as the SDK's handlers see it; the secret is known by its hash only."""

    secret_hash: str | None = None
    # What it registered (or its document says); `scope` itself is widened for the SDK's check.
    registered_scope: str | None = None


class Code(AuthorizationCode):
    grant_id: str


class Refresh(RefreshToken):
    grant_id: str


class Access(AccessToken):
    grant_id: str


_SdkToken = TypeVar("_SdkToken", Access, Refresh)


def _sdk_token(kind: type[_SdkToken], found: oauth.TokenRecord) -> _SdkToken:
    """A stored token as the SDK's handlers read it."""
    return kind(
        token=found.token,
        client_id=found.client_id,
        scopes=found.scopes,
        expires_at=int(found.expires_at.timestamp()),
        resource=found.resource,
        subject=str(found.person_id),
        grant_id=str(found.grant_id),
    )


def _error(err: OAuthError, allowed: Any, default: str) -> Any:
    return err.code if err.code in get_args(allowed) else default


class CoreOAuthProvider:
    """`mcp.server.auth.provider.OAuthAuthorizationServerProvider` backed by `core.oauth`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_client(self, client_id: str) -> StoredClient | None:
        record = await clients.get_client(self.db, client_id)
        if record is None:
            return None
        meta = {k: v for k, v in record.metadata.items() if k != "client_id"}
        if record.kind == "document":
            meta["token_endpoint_auth_method"] = "none"  # noqa: S105  (public: no secret)
        registered = meta.get("scope") or None
        # Registered without a scope: any supported scope may be asked for at /authorize.
        meta["scope"] = registered or " ".join(supported_scopes())
        try:
            return StoredClient.model_validate(
                {
                    **meta,
                    "client_id": record.client_id,
                    "secret_hash": record.secret_hash,
                    "registered_scope": registered,
                }
            )
        except ValidationError:
            log.info("oauth_client_unusable", client_id=client_id)
            return None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        metadata = client_info.model_dump(mode="json", exclude_none=True)
        try:
            await clients.register_client(self.db, metadata, client_info.client_secret)
        except OAuthError as err:
            code = cast(RegistrationErrorCode, _error(err, RegistrationErrorCode, "invalid_client_metadata"))
            raise RegistrationError(code, err.message) from err

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        # Asking for nothing gets what the client registered for, or else everything (`*`).
        scopes = params.scopes
        if not scopes and isinstance(client, StoredClient) and client.registered_scope:
            scopes = client.registered_scope.split()
        try:
            return await oauth.start_request(
                self.db,
                _record(client),
                redirect_uri=str(params.redirect_uri),
                redirect_uri_explicit=params.redirect_uri_provided_explicitly,
                state=params.state,
                code_challenge=params.code_challenge,
                scopes=scopes,
                resource=params.resource,
            )
        except OAuthError as err:
            code = cast(AuthorizationErrorCode, _error(err, AuthorizationErrorCode, "invalid_request"))
            raise AuthorizeError(code, err.message) from err

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> Code | None:
        found = await oauth.load_code(self.db, client.client_id, authorization_code)
        if found is None:
            return None
        return Code(
            code=found.code,
            scopes=found.scopes,
            expires_at=found.expires_at.timestamp(),
            client_id=found.client_id,
            code_challenge=found.code_challenge,
            redirect_uri=AnyUrl(found.redirect_uri),
            redirect_uri_provided_explicitly=found.redirect_uri_explicit,
            resource=found.resource,
            subject=str(found.person_id),
            grant_id=str(found.grant_id),
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: Code
    ) -> OAuthToken:
        record = await oauth.load_code(self.db, client.client_id, authorization_code.code)
        if record is None:
            raise TokenError("invalid_grant", "the authorization code is no longer valid")
        return await _tokens(oauth.redeem_code(self.db, record))

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> Refresh | None:
        found = await oauth.load_refresh(self.db, client.client_id, refresh_token)
        return None if found is None else _sdk_token(Refresh, found)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: Refresh, scopes: list[str]
    ) -> OAuthToken:
        record = await oauth.load_refresh(self.db, client.client_id, refresh_token.token)
        if record is None:
            raise TokenError("invalid_grant", "the refresh token is no longer valid")
        return await _tokens(oauth.rotate_refresh(self.db, record, scopes))

    async def load_access_token(self, token: str) -> Access | None:
        found = await oauth.load_access(self.db, token)
        return None if found is None else _sdk_token(Access, found)

    async def revoke_token(self, token: Access | Refresh) -> None:
        await oauth.revoke_grant(self.db, uuid.UUID(token.grant_id), "revoked_by_client")

    async def exchange_identity_assertion(
        self, client: OAuthClientInformationFull, params: Any
    ) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "the JWT bearer grant is not supported here")


def _record(client: OAuthClientInformationFull) -> clients.ClientRecord:
    meta = client.model_dump(mode="json", exclude_none=True, exclude={"secret_hash", "registered_scope"})
    return clients.ClientRecord(client.client_id, "registered", None, meta)


async def _tokens(pending: Any) -> OAuthToken:
    try:
        pair: oauth.TokenPair = await pending
    except OAuthError as err:
        raise TokenError(
            cast(TokenErrorCode, _error(err, TokenErrorCode, "invalid_grant")), err.message
        ) from err
    return OAuthToken(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        scope=" ".join(pair.scopes),
        refresh_token=pair.refresh_token,
    )


class HashedSecretAuthenticator(ClientAuthenticator):
    """The SDK's client authentication, comparing the hash of the presented secret with the
    stored one (the SDK's compares plaintext, which we do not keep)."""

    async def authenticate_request(self, request: Request) -> OAuthClientInformationFull:
        form = await request.form()
        client_id = form.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise AuthenticationError("Missing client_id")
        client = await self.provider.get_client(client_id)
        if not isinstance(client, StoredClient):
            raise AuthenticationError("Invalid client_id")
        method = client.token_endpoint_auth_method or "client_secret_post"
        secret: str | None = None
        if method == "client_secret_basic":
            secret = _basic_secret(request.headers.get("Authorization", ""), client_id)
        elif method == "client_secret_post":
            posted = form.get("client_secret")
            secret = posted if isinstance(posted, str) else None
        elif method != "none":
            raise AuthenticationError(f"Unsupported auth method: {method}")
        if method != "none":
            presented = sha256_hex(secret) if secret else ""
            if not client.secret_hash or not hmac.compare_digest(presented, client.secret_hash):
                raise AuthenticationError("Invalid client_secret")
        return client


def _basic_secret(header: str, client_id: str) -> str:
    if not header.startswith("Basic "):
        raise AuthenticationError("Missing or invalid Basic authentication in Authorization header")
    try:
        decoded = base64.b64decode(header[6:]).decode()
        basic_id, secret = decoded.split(":", 1)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise AuthenticationError("Invalid Basic authentication header") from exc
    if unquote(basic_id) != client_id:
        raise AuthenticationError("Client ID mismatch in Basic auth")
    return unquote(secret)


class ResourceBoundTokenHandler(TokenHandler):
    """The SDK's token endpoint, refusing a `resource` that is not our MCP endpoint before
    anything else (RFC 8707 `invalid_target`); codes and refresh tokens are bound to it anyway."""

    db: Database

    async def handle(self, request: Request) -> Response:
        form = await request.form()
        grant = form.get("grant_type")
        if isinstance(grant, str) and grant and grant not in GRANT_TYPES:
            # RFC 6749 5.2, said before the SDK's model would refuse it as a malformed request.
            described = "this server grants only " + " and ".join(GRANT_TYPES)
            return cast(
                Response,
                self.response(
                    TokenErrorResponse(error="unsupported_grant_type", error_description=described)
                ),
            )
        resource = form.get("resource")
        if isinstance(resource, str) and resource:
            try:
                oauth.canonical_resource(self.db, resource)
            except OAuthError as err:
                return cast(
                    Response,
                    self.response(TokenErrorResponse(error="invalid_target", error_description=err.message)),
                )
        return _grant_mismatch(cast(Response, await super().handle(request)))


def _grant_mismatch(response: Response) -> Response:
    """A code redeemed with another redirect_uri than it was issued for is `invalid_grant`
    (RFC 6749 4.1.3, 5.2: the grant does not match the redirection URI); the SDK says
    `invalid_request`."""
    if response.status_code != 400:
        return response
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return response
    if body.get("error") == "invalid_request" and str(body.get("error_description", "")).startswith(
        "redirect_uri did not match"
    ):
        body["error"] = "invalid_grant"
        return JSONResponse(
            body, status_code=400, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )
    return response


class PublicClientRevocationHandler(RevocationHandler):
    """The SDK's revocation endpoint requires a `client_secret` parameter even from public
    clients, which RFC 7009 does not ask of them; this one takes the same steps without it."""

    async def handle(self, request: Request) -> Response:
        try:
            client = await self.client_authenticator.authenticate_request(request)
        except AuthenticationError as err:
            return JSONResponse(
                {"error": "invalid_client", "error_description": err.message}, status_code=401
            )
        token = (await request.form()).get("token")
        if not isinstance(token, str) or not token:
            return JSONResponse({"error": "invalid_request", "error_description": "token is required"}, 400)
        found: Access | Refresh | None = await self.provider.load_access_token(token)
        if found is None:
            found = await self.provider.load_refresh_token(client, token)
        if found is not None and found.client_id == client.client_id:
            await self.provider.revoke_token(found)
        # An unknown or foreign token is not an error (RFC 7009 §2.2).
        return Response(status_code=200, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _limited(app: ASGIApp) -> ASGIApp:
    return RequestBodyLimitMiddleware(app, DEFAULT_MAX_REQUEST_BODY_SIZE)


def _cors(app: ASGIApp, methods: list[str]) -> ASGIApp:
    # Browser-based MCP clients (the Inspector) call these endpoints from their own origin.
    return CORSMiddleware(
        app=app, allow_origins="*", allow_methods=methods, allow_headers=["mcp-protocol-version"]
    )


def _posted_from_browsers(path: str, handle: Callable[[Request], Awaitable[Response]]) -> Route:
    """A POST endpoint that browser-based clients call cross-origin, with the body size limit."""
    methods = ["POST", "OPTIONS"]
    return Route(path, endpoint=_cors(_limited(request_response(handle)), methods), methods=methods)


def oauth_routes(db: Database) -> list[Route]:
    """The authorization server's endpoints, with this server's base URL as issuer. None when
    that URL cannot be an issuer (plain http beyond loopback, e.g. a container bound to 0.0.0.0
    without `ATLILITH_PUBLIC_URL`): the server still runs, hosts then need a key or token."""
    # As the protected-resource metadata spells it: no trailing slash (RFC 8414 compares exactly).
    issuer = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True)).validate_python(
        db.settings.base_url
    )
    try:
        validate_issuer_url(issuer)
    except ValueError as err:
        log.warning(
            "oauth_disabled", issuer=db.settings.base_url, reason=str(err), fix="set ATLILITH_PUBLIC_URL"
        )
        return []
    provider = CoreOAuthProvider(db)
    registration = ClientRegistrationOptions(enabled=True)
    revocation = RevocationOptions(enabled=True)
    metadata = build_metadata(issuer, None, registration, revocation)
    methods = ["none", "client_secret_post", "client_secret_basic"]
    metadata.token_endpoint_auth_methods_supported = methods
    metadata.revocation_endpoint_auth_methods_supported = methods
    metadata.client_id_metadata_document_supported = True
    metadata.authorization_response_iss_parameter_supported = True
    authenticator = HashedSecretAuthenticator(provider)
    token = ResourceBoundTokenHandler(provider, authenticator)
    token.db = db
    return [
        Route(
            METADATA_PATH,
            endpoint=cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
            methods=["GET", "OPTIONS"],
        ),
        Route(
            "/authorize",
            endpoint=_limited(request_response(AuthorizationHandler(provider).handle)),
            methods=["GET", "POST"],
        ),
        _posted_from_browsers("/token", token.handle),
        _posted_from_browsers("/register", RegistrationHandler(provider, registration).handle),
        _posted_from_browsers("/revoke", PublicClientRevocationHandler(provider, authenticator).handle),
    ]
