"""The scopes a token may grant, by name: stdlib only, so the command line can list them without loading jwt."""

from __future__ import annotations

SCOPE_WRITE = "logs:write"
SCOPE_READ = "logs:read"
SCOPE_ADMIN = "admin"
ALL_SCOPES = (SCOPE_WRITE, SCOPE_READ, SCOPE_ADMIN)
