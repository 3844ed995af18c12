"""The bus that carries every commit to the topic registries: memory:// in one process (local.py, which also picks
the bus), Redis across several (redis_bus.py, on the connections of redis_link.py)."""
