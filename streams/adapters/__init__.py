"""Adapters of the ports to real services, one folder per service: Kafka, Milvus,
Prefect and the ledger (SQLite, PostgreSQL). Ports and decisions live in ``agents`` and
``prefect_bridge``; only ``streams.wiring`` (and the operator commands) build these."""
