"""`python -m sentra`: the same as the `sentra` command."""

from sentra.cli import main

raise SystemExit(main())
