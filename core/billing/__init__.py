"""Billing: credit accounts and their ledger, and jobs — every component action runs as a job,
held, executed (in-process or by a peer service), then captured or released."""
