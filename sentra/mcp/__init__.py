"""The Model Context Protocol, so AI assistants can read and follow agent runs: JSON-RPC 2.0 framing (jsonrpc.py),
the handshake and methods (protocol.py) and the tools (tools.py, with their arguments, text and waits), served at
POST /mcp by sentra.api.mcp. Written here rather than taken from the `mcp` SDK, whose server side is ASGI."""
