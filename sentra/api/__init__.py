"""The endpoints, one module per resource, on the handlers and checks every endpoint shares (base.py, direct.py)."""
