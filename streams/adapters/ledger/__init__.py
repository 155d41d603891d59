"""The chapter ledger on SQLite (embedded) and PostgreSQL (production), over one
set of SQL statements."""
