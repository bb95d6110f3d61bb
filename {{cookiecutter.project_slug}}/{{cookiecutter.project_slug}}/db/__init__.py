"""Database plumbing: the connection pool settings and the 503 on exhaustion."""
