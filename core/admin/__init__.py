"""Platform admin: persons and orgs across tenants, suspension, and the audit log (core.audit)."""
