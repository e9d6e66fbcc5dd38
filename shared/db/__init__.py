"""PostgreSQL plumbing: pools bound to a service schema, and plain-SQL migrations."""
