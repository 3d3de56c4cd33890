"""Tenancy: persons, orgs, members, invitations, brands, clients, sessions and API keys."""
