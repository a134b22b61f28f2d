"""HTTP handlers: thin, each parses, calls a service, writes (routes in foreman/app.py)."""
