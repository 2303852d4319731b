"""The MCP server the MCP bench calls: one `echo` tool over stdio (the SDK's MCPServer)."""

from mcp.server.mcpserver import MCPServer

app = MCPServer("bench-echo")


@app.tool()
def echo(text: str) -> str:
    """Repeat the text."""
    return text


if __name__ == "__main__":
    app.run("stdio")
