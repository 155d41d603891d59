"""Prefect: the flow submitter (the async client)."""
