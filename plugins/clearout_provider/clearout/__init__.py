"""Clearout: the wire rules, models and sub-status table of the Clearout API v2 (hooks/ holds the hook)."""
