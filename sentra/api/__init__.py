"""The endpoints, one module per resource, on the handler and checks every endpoint shares (base.py), served from
one route table (routes.py)."""
