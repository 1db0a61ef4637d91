"""Airflow notifiers of this provider (``on_failure_callback`` and friends)."""
