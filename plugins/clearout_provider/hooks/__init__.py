"""Hooks: the only code that speaks HTTP to the vendors (transport, auth, retries, rate limits)."""
