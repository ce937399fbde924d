"""A small MCP server with a side effect, speaking Streamable HTTP (JSON answers), built with
the Python SDK's MCPServer: the second upstream of test_http.py. `write_note` writes a file,
so a denied call that reached it would leave a trace. Usage: notes_server.py PORT
"""
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")


@server.tool()
def write_note(path: str, text: str) -> str:
    """Writes `text` to the file `path`."""
    with open(path, "w") as f:
        f.write(text)
    return f"wrote {len(text)} characters to {path}"


@server.tool()
def erase_notes() -> str:
    """Erases nothing (declared by the test bundle, permitted only by its third version)."""
    return "nothing erased"


server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]), json_response=True)
