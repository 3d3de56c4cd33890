"""What an OAuth client sends is text the consent page shows and PostgreSQL stores: a name with
bidirectional controls (which mirrored the consent page's sentence and the browser's return
address) is refused at registration, and a NUL anywhere -- in the metadata, the client id, the
state -- is an OAuth error, never a 500."""

from __future__ import annotations

import httpx

from tests.support.oauth import REDIRECT, authorize, pkce, query, register


async def test_registration_refuses_names_that_disguise_and_text_that_cannot_be_stored(
    client: httpx.AsyncClient,
) -> None:
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    for extra, said in (
        ({"client_name": "Claude\u202eedualC"}, "bidirectional control"),
        ({"client_name": "Safe \u2066Host\u2069"}, "bidirectional control"),
        ({"client_name": "evil\u0000name"}, "control character"),
        ({"client_name": "Host", "software_id": "a\u0000b"}, "control character"),
    ):
        r = await client.post("/register", json={**body, **extra})
        assert r.status_code == 400, (extra, r.text)
        assert r.json()["error"] == "invalid_client_metadata" and said in r.json()["error_description"]
    # Right-to-left text itself is a name like any other.
    assert (await register(client, name="مساعد"))["client_name"] == "مساعد"


async def test_a_nul_in_an_authorization_request_is_an_oauth_error(client: httpx.AsyncClient) -> None:
    unknown = await authorize(client, "a\u0000b", pkce())
    assert unknown.status_code == 400 and "location" not in unknown.headers, unknown.text
    c = (await register(client))["client_id"]
    r = await authorize(client, c, pkce(), state="a\u0000b")
    assert r.status_code == 302, r.text
    back = query(r.headers["location"])
    assert back["error"] == "invalid_request" and "control character" in back["error_description"]
