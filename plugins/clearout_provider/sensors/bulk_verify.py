"""ClearoutBulkVerifySensor: wait for a Clearout bulk list someone else started (an app upload, a hook call).

It asks the same questions as the bulk operator's wait, with the same trigger
(:class:`~clearout_provider.triggers.bulk_job.ClearoutBulkJobTrigger`), so a list ends the same way for
both: completed → success; cancelled, failed or unavailable (1029: wrong id, removed, another account's)
→ a clear :class:`~clearout_provider.triggers.bulk_job.ClearoutBulkJobError`; past ``timeout`` →
``AirflowSensorTimeout`` (so ``soft_fail`` applies). The sensor never cancels the list: it did not start it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowSensorTimeout

from clearout_provider.clearout.verifier import ClearoutLists
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.operators.links import LIST_ID_XCOM_KEY, ClearoutListLink
from clearout_provider.triggers.bulk_job import TIMEOUT, ClearoutBulkJobTrigger, raise_for_event
from clearout_provider.verification.verifier import BulkKind

if TYPE_CHECKING:
    from airflow.sdk import Context


class ClearoutBulkVerifySensor(BaseSensorOperator):
    """Wait until a Clearout bulk list completes; return its progress status.

    :param list_id: the list to wait for. Templated.
    :param kind: ``"verify"`` (default) or ``"finder"``.
    :param clearout_conn_id: connection of type ``clearout``.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param max_poll_interval: in deferrable mode polls back off from ``poke_interval`` up to this.

    Returns (XCom) ``{"list_id", "kind", "progress_status", "percent"}``.
    """

    template_fields: Sequence[str] = ("list_id",)
    operator_extra_links = (ClearoutListLink(),)
    ui_color = "#d3f1ff"

    def __init__(
        self,
        *,
        list_id: str,
        kind: BulkKind = "verify",
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_poll_interval: float = 300.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30.0)
        super().__init__(**kwargs)
        self.list_id = list_id
        self.clearout_kind = kind
        self.clearout_conn_id = clearout_conn_id
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval

    @cached_property
    def hook(self) -> ClearoutHook:
        return ClearoutHook(self.clearout_conn_id)

    def _trigger(self, deadline: float | None = None) -> ClearoutBulkJobTrigger:
        return ClearoutBulkJobTrigger(
            job_id=self.list_id,
            verifier="clearout",
            kind=self.clearout_kind,
            conn_id=self.clearout_conn_id,
            poll_interval=float(self.poke_interval),
            max_poll_interval=max(float(self.poke_interval), self.max_poll_interval),
            deadline=deadline,
            cancel_on_deadline=False,
        )

    def execute(self, context: Context) -> Any:
        context["ti"].xcom_push(key=LIST_ID_XCOM_KEY, value=self.list_id)
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)  # already finished (or unavailable): no deferral needed
        if done.is_done:
            return done.xcom_value
        timeout = self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else float(self.timeout)
        self.defer(trigger=self._trigger(time.time() + timeout), method_name="execute_complete")

    def poke(self, context: Context) -> PokeReturnValue:
        trigger, lists = self._trigger(), ClearoutLists(self.hook, self.clearout_kind)
        try:
            progress, error = lists.progress(self.list_id), None
        except Exception as exc:  # noqa: BLE001 - judged exactly like the trigger judges it
            progress, error = None, exc
        payload = trigger.judge(progress, error, lists)
        if payload is None:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._result(payload))

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if isinstance(event, Mapping) and event.get("status") == TIMEOUT:
            raise AirflowSensorTimeout(
                event.get("message") or f"Clearout list {self.list_id} did not finish in time"
            )
        return self._result(event)

    @staticmethod
    def _result(payload: Mapping[str, Any] | None) -> dict[str, Any]:
        event = raise_for_event(payload)  # only a completed list gets past this line
        return {
            "list_id": event["list_id"],
            "kind": event["kind"],
            "progress_status": event.get("progress_status", "completed"),
            "percent": event["percent"],
        }
