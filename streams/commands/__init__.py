"""Operator commands behind the CLI: produce, search, status, dlq, replay."""
