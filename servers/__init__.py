"""Transports: the FastAPI app (REST + MCP over HTTP + Inngest), the CLI, MCP over stdio."""
