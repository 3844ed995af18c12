"""Webhooks: what an event is (records, events), how it is signed and rendered (signing, formats), where it may go
(targets), and the worker that delivers the outbox (worker). Storage writes events into the outbox; nothing here
imports storage's backends."""
