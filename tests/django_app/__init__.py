"""A test-only Django app: a custom user model, login and change-address pages."""
