"""OAuth 2.1 for MCP hosts: clients (registered or known by a metadata document), authorization
requests a person approves in the portal, grants ("connections") and their tokens.

`service` holds what a person does (see, approve or deny a request; list and revoke
connections); `authorization` what the authorization server does for a client (register,
start a request, redeem a code, rotate and revoke tokens); `documents` fetches client ID
metadata documents safely. The HTTP endpoints are in `servers/oauth.py`."""
