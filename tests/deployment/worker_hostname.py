"""The hostname a deployment test's celery worker reports for its task instances: the worker's own name.

All workers of a test run on one machine, so the real hostname (or IP) cannot tell them apart. Each
worker of :class:`airflow_stack.AirflowStack` runs with ``[core] hostname_callable`` pointing here and its
name in :data:`WORKER_NAME_ENV`: the ``hostname`` of every task instance in the metadata DB then says which
worker ran it, as it would on a fleet of machines.
"""

from __future__ import annotations

import os

WORKER_NAME_ENV = "CLEAROUT_TEST_WORKER_NAME"


def hostname() -> str:
    """This worker's name (``[core] hostname_callable`` of the stack's workers)."""
    return os.environ[WORKER_NAME_ENV]
