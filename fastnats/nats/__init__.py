"""Supervision of a nats-server: its conf reader, the launcher, and the demo. Off the data path."""
