"""A real redis-server for the tests, started on a loopback port, and a fresh key prefix per test."""
