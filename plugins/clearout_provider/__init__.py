"""airflow-provider-clearout: Clearout email verification for Apache Airflow 3, with CleverTap list cleaning.

Airflow discovers this package through the ``apache_airflow_provider`` entry point, which returns
:func:`get_provider_info`. Connection forms are declared here the Airflow 3.2+ way (``conn-fields`` and
``ui-field-behaviour``), not through deprecated hook methods. ``clevertap://`` asset URIs are registered
here too (``asset-uris``, handled in :mod:`clearout_provider.lineage`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

PACKAGE_NAME = "airflow-provider-clearout"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (``airflow providers list`` and friends)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Clearout",
        "description": (
            "Clearout email verification and Email Finder, CleverTap list cleaning, Mail.so validation."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Clearout",
                "external-doc-url": "https://docs.clearout.io/api-overview.html",
                "tags": ["service"],
            },
            {
                "integration-name": "CleverTap",
                "external-doc-url": "https://developer.clevertap.com/docs/api-overview",
                "tags": ["service"],
            },
            {
                "integration-name": "Mail.so",
                "external-doc-url": "https://docs.mails.so",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "Clearout", "python-modules": ["clearout_provider.hooks.clearout"]},
            {"integration-name": "CleverTap", "python-modules": ["clearout_provider.hooks.clevertap"]},
            {"integration-name": "Mail.so", "python-modules": ["clearout_provider.hooks.mailso"]},
        ],
        "operators": [
            {
                "integration-name": "Clearout",
                "python-modules": [
                    "clearout_provider.operators.bulk_verify",
                    "clearout_provider.operators.instant_verify",
                    "clearout_provider.operators.email_finder",
                ],
            },
            {"integration-name": "CleverTap", "python-modules": ["clearout_provider.operators.clevertap"]},
            # verifier="mailso": the same instant operator validates with Mail.so (calls or batches).
            {"integration-name": "Mail.so", "python-modules": ["clearout_provider.operators.instant_verify"]},
        ],
        "sensors": [
            {"integration-name": "Clearout", "python-modules": ["clearout_provider.sensors.bulk_verify"]},
        ],
        "triggers": [
            {"integration-name": "Clearout", "python-modules": ["clearout_provider.triggers.bulk_job"]},
        ],
        "extra-links": [
            "clearout_provider.operators.links.RunReportLink",
            "clearout_provider.operators.links.ClearoutListLink",
        ],
        # The UI plugin (clearout_provider.ui.plugin) is registered through the "airflow.plugins" entry
        # point, not a "plugins" entry here: Airflow 3.3 reads this one only with
        # [core] lazy_discover_providers = False, and would then find the plugin twice.
        # Asset("clevertap://<region>/<account-id>/profiles") (or clevertap://<connection-id>/<name>, the
        # shipped DAGs' form) is checked and normalised, and becomes the OpenLineage dataset the operators
        # emit (clearout_provider.lineage). Airflow 3.3 reads "asset-uris" only (no "dataset-uris").
        "asset-uris": [
            {
                "schemes": ["clevertap"],
                "handler": "clearout_provider.lineage.sanitize_uri",
                "to_openlineage_converter": "clearout_provider.lineage.convert_asset_to_openlineage",
            }
        ],
        "notifications": ["clearout_provider.notifications.failure.ClearoutFailureNotifier"],
        "config": {
            "clearout": {
                "description": "Defaults of the Clearout bulk operators and the shipped DAGs.",
                "options": {
                    "bulk_poll_interval": {
                        "description": (
                            "Seconds before a bulk list's second progress poll; each later pause is "
                            "1.5 times longer, up to 10 times this (an operator's poll_interval wins)."
                        ),
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "10",
                        "default": "30",
                    },
                    "bulk_list_pool": {
                        "description": (
                            "Pool the shipped DAGs' bulk verify tasks run in, to keep every DAG of "
                            "the deployment within Clearout's 3 concurrent lists (create it with "
                            "--include-deferred). Empty: no pool; each run caps itself at 3 lists and "
                            "Clearout's 'too many lists' answer (1001) makes a task wait for a free slot."
                        ),
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "clearout_bulk_lists",
                        "default": "",
                    },
                    "task_retries": {
                        "description": "Retries of the shipped DAGs' tasks (exponential backoff). A retry "
                        "never pays twice: verdicts are in the verdict ledger and bulk lists are resumed.",
                        "version_added": "0.2.0",
                        "type": "integer",
                        "example": "2",
                        "default": "2",
                    },
                    "signup_schedule": {
                        "description": "Cron of the mailso_signup_validation DAG (read in "
                        "schedule_timezone).",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "*/2 * * * *",
                        "default": "*/5 * * * *",
                    },
                    "signup_events_channel": {
                        "description": (
                            "Redis pub/sub channel whose messages also start mailso_signup_validation "
                            "(an Asset watcher; needs the events extra and a redis_default connection). "
                            "Empty: the DAG runs on its schedule only."
                        ),
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "clevertap.signups",
                        "default": "",
                    },
                    "low_credit_action": {
                        "description": (
                            "What a verify task does when the Clearout balance is low before it spends "
                            "(below one credit per address it is about to send, or below the account's "
                            "low-credit threshold): 'warn' logs and counts clearout.low_credit and goes on; "
                            "'fail' stops the task before anything is sent. An operator's low_credit wins."
                        ),
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "fail",
                        "default": "warn",
                    },
                    "schedule_timezone": {
                        "description": (
                            "Time zone the shipped DAGs' schedules are read in (an IANA name): their "
                            "timezone-aware start dates, the nightly 02:00, the backfill's months and "
                            "the sign-up cron follow it, daylight saving included."
                        ),
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "Europe/Berlin",
                        "default": "UTC",
                    },
                    "include_folder": {
                        "description": (
                            "Folder of the data files the shipped DAGs read: property renames "
                            "(clevertap_property_names.json), CQL segment examples (segments/*.json) "
                            "and report template overrides (report/). Empty: the include folder next "
                            "to the DAGs folder. Every file is optional."
                        ),
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "/opt/airflow/include",
                        "default": "",
                    },
                    "task_retry_delay": {
                        "description": "Seconds before the first retry of a shipped DAG's task.",
                        "version_added": "0.2.0",
                        "type": "float",
                        "example": "60",
                        "default": "60",
                    },
                },
            },
        },
        "connection-types": [
            {
                "hook-class-name": "clearout_provider.hooks.clearout.ClearoutHook",
                "connection-type": "clearout",
                "hook-name": "Clearout",
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": (
                            "HTTP timeout of one API call; instant verifications may take up to 180 s."
                        ),
                        "schema": {"type": ["number", "null"], "default": 190, "minimum": 1},
                    },
                    "rpm": {
                        "label": "Instant verify requests per minute",
                        "description": "Your Clearout plan's verify RPM (10 on the smallest plan). The hook "
                        "starts from it and follows Clearout's x-ratelimit headers once they arrive.",
                        "schema": {"type": ["integer", "null"], "default": 10, "minimum": 1},
                    },
                    "finder_rpm": {
                        "label": "Instant finder requests per minute",
                        "description": "Your Clearout plan's Email Finder RPM (6 on the smallest plan).",
                        "schema": {"type": ["integer", "null"], "default": 6, "minimum": 1},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API token"},
                    "placeholders": {
                        "host": "https://api.clearout.io/v2",
                        "password": "32hex:64hex token from Clearout Apps",
                    },
                },
            },
            {
                "hook-class-name": "clearout_provider.hooks.clevertap.CleverTapHook",
                "connection-type": "clevertap",
                "hook-name": "CleverTap",
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": (
                            "Sub-domain of your dashboard URL (eu1 for eu1.dashboard.clevertap.com)."
                        ),
                        "schema": {
                            "type": "string",
                            "enum": ["eu1", "in1", "us1", "sg1", "aps3", "mec1"],
                            "default": "eu1",
                        },
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "login": "Account ID",
                        "password": "Passcode",
                        "host": "Host override (optional)",
                    },
                    "placeholders": {
                        "login": "Settings → Project → Project ID, e.g. 948-4KK-444Z",
                        "host": (
                            "empty = the region's API host; http://127.0.0.1:8765/clevertap for the sandbox"
                        ),
                    },
                },
            },
            {
                "hook-class-name": "clearout_provider.hooks.mailso.MailsoHook",
                "connection-type": "mailso",
                "hook-name": "Mail.so",
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "HTTP timeout of one API call.",
                        "schema": {"type": ["number", "null"], "default": 60, "minimum": 1},
                    },
                    "rpm": {
                        "label": "Requests per minute",
                        "description": "Most requests the hook sends per minute (Mail.so publishes no "
                        "limit; a 429 is retried after its Retry-After).",
                        "schema": {"type": ["integer", "null"], "default": 60, "minimum": 1},
                    },
                    "batch_size": {
                        "label": "Batch size",
                        "description": "Most addresses one batch (list validation) may hold.",
                        "schema": {
                            "type": ["integer", "null"],
                            "default": 500,
                            "minimum": 1,
                            "maximum": 1000,
                        },
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API key", "schema": "Scheme"},
                    "placeholders": {
                        "host": "https://api.mails.so/v1 (empty = this); http://127.0.0.1:8765/mailso/v1 for "
                        "the sandbox",
                        "schema": "https (used when the host has no scheme)",
                        "password": "API key from the Mail.so dashboard",
                    },
                },
            },
        ],
    }
