"""The MCP server: its tools, resources, access control, argument validation and the stdio transport."""
