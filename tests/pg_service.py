"""A real PostgreSQL server for the tests, started on a loopback port, and a fresh database per test."""
