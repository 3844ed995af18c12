"""Storage: SQLite and PostgreSQL side by side behind one interface (base.py), opened by open.py."""
