"""Start the Sentra server: `python server.py [--config sentra.toml] [--host H] [--port P] [--db PATH]`."""

from sentra.cli import main_serve

raise SystemExit(main_serve())
