"""Django's PostgreSQL backend, pointed at the test session's server when it connects."""
