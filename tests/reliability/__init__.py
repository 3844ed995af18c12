"""Reliability and security suites: fuzzing, crash recovery, disk full, soak and hostile clients."""
