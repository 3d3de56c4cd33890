"""MCP tool adapters, one module per toolset. Each tool: flat typed arguments, a pydantic
output model, honest annotations, and a body that opens the context and calls core."""
