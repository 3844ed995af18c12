"""Sentra: a self-hosted live-log server for AI agents."""

__version__ = "0.1.0"
