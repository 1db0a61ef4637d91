"""The shipped DAGs as tests run them, and what a finished ``dag.test()`` run left behind, read back from the
metadata DB: task states and XComs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

SHIPPED_DAGS = Path(__file__).resolve().parents[2] / "dags"


def shipped_dag(dag_id: str) -> Any:
    """A fresh import of ``dags/<dag_id>.py``, its DAG built now (``[clearout]`` settings read now, e.g. the
    retries a test sets just before). Each shipped file is named for its DAG and for the function that
    makes it."""
    spec = importlib.util.spec_from_file_location(f"{dag_id}_under_test", SHIPPED_DAGS / f"{dag_id}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, dag_id)()


def states(dr: Any) -> dict[str, str | None]:
    """State of every task instance, keyed ``task_id`` (``task_id[i]`` for map index ``i``)."""
    return {
        ti.task_id + ("" if ti.map_index < 0 else f"[{ti.map_index}]"): ti.state
        for ti in dr.get_task_instances()
    }


def xcom(dr: Any, task_id: str, map_index: int = -1, *, key: str = "return_value") -> Any:
    """One XCom of run ``dr`` (a task's return value by default); None when the task pushed none."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=dr.run_id, dag_ids=dr.dag_id, task_ids=task_id, map_indexes=map_index, key=key
            )
        ).first()
        return XComModel.deserialize_value(row) if row is not None else None


def asset_events(dr: Any) -> dict[str, list[dict[str, Any]]]:
    """The asset events run ``dr`` recorded in the metadata DB, keyed by asset URI: each event's extra."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dr.dag_id, AssetEvent.source_run_id == dr.run_id)
            .order_by(AssetEvent.id)
        ).all()
    events: dict[str, list[dict[str, Any]]] = {}
    for uri, extra in rows:
        events.setdefault(uri, []).append(dict(extra or {}))
    return events
