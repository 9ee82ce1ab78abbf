"""The SQL store: one schema, one set of queries, SQLite and PostgreSQL dialects (layer 4)."""
