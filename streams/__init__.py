"""Wiring of scribe-stream: settings, topics, the Faust app, the embedded stack, the CLI."""
