"""An example Django site using bounce-middleware (settings, URLs, views and a demo user)."""
