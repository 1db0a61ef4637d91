"""Benchmark-only Airflow plugin: hand a finished task's freed memory back to the OS before the next task.

``airflow dags test`` runs every task of a run in ONE process, whereas a deployment runs each task in a
process of its own that exits when the task ends. Without this, memory a task freed but its allocators
kept (pyarrow's jemalloc pool, glibc's heap) stays in the process's RSS and inflates every later task's
peak. After each task this listener collects garbage, asks pyarrow's pool to release unused memory and
glibc to trim its heap, so the next task starts near what a fresh task process would hold: the imports
plus whatever is still referenced (which still counts, so the per-task figures stay upper bounds).
Loaded only by the benchmarks (``AIRFLOW__CORE__PLUGINS_FOLDER``), never by the provider.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


def _release() -> None:
    gc.collect()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    libc = ctypes.util.find_library("c")
    if libc:
        ctypes.CDLL(libc).malloc_trim(0)


class _Listener:
    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        _release()

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        _release()


class ReleaseBetweenTasks(AirflowPlugin):
    name = "release_between_tasks"
    listeners = [_Listener()]
