"""Atlilith's tenant-aware domain. Transports (REST, MCP, Inngest) live in `servers/` and `tools/`."""

__version__ = "0.1.0"
