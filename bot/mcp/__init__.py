"""Tools from Model Context Protocol servers.

Each `[mcp.servers.<name>]` entry is one supervised connection (connection.py): launched over
stdio (on the host, or inside bubblewrap: launch.py) or reached over streamable HTTP / SSE
(transport.py). Its tools enter the gateway's ToolRegistry as `<server>__<tool>` (tools.py)
once listed, with their schemas checked and trimmed (schema.py), and leave it while the server
is down; the manager (manager.py) keeps the registry in step and tells the owner about an
outage once. Results become text for the model (results.py), marked untrusted.

Importing this package does not import the MCP SDK; starting a server does.
"""
