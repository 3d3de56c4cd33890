"""OAuth 2.1 for MCP hosts: clients (registered or known by a metadata document), authorization
requests a person approves in the portal, grants ("connections") and their tokens.

`service` holds what a person does (see, approve or deny a request; list and revoke
connections); `clients` how the authorization server knows a client (registration, metadata
documents, fetched safely by `documents`); `authorization` what it does for one (start a
request, redeem a code, rotate and revoke tokens); `scopes` the vocabulary.
The HTTP endpoints are in `servers/oauth.py`."""
