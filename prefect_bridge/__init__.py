"""Prefect side of scribe-stream: the processing flow, its deployment, the async client."""
