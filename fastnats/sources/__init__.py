"""Transports that bring raw bytes from a NATS server; nothing here parses them."""
