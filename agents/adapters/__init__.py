"""Adapters of the agents' ports to real services: Milvus and the ledgers (SQLite,
PostgreSQL). Ports and decisions live in ``agents``; only ``streams.wiring`` builds these."""
