"""Async pollers that run in Airflow's triggerer: ask the hook, yield one TriggerEvent, cancel on on_kill."""
