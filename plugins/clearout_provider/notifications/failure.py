"""ClearoutFailureNotifier: say that a task failed and why, in the log and (when configured) to a webhook.

Meant for ``on_failure_callback`` (the shipped DAGs set it through ``default_args``). A low-credit stop
(:mod:`clearout_provider.credit_check`, ``low_credit="fail"``) reads as such; any other failure names the
exception. The message holds the DAG, task, run and try, and the exception's class and text with every
email address masked (:func:`clearout_provider.masking.mask_email`); never a token.

The webhook is optional: the connection ``webhook_conn_id`` (default ``clearout_alerts``) holds its URL
in the host field (e.g. ``https://hooks.slack.com/services/...``, any endpoint taking a JSON
``{"text": ...}`` POST: Slack, Mattermost, Rocket.Chat, Google Chat). Without that connection the message
is only logged, so the notifier is harmless in a deployment that never configured it. The URL is often a
secret itself: it is masked in logs and never printed; a failed post is logged by its class and status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from clearout_provider.masking import mask_email

#: The connection the notifier posts to when it exists.
DEFAULT_WEBHOOK_CONN_ID = "clearout_alerts"
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:]+")
_MAX_DETAIL = 500


def failure_message(context: Mapping[str, Any]) -> str:
    """One line (plus the exception) saying what failed, from a task callback's context."""
    from clearout_provider.exceptions import ClearoutCreditsError

    ti = context.get("ti")
    where = " · ".join(
        f"{name} {value}"
        for name, value in (
            ("DAG", getattr(ti, "dag_id", None)),
            ("task", getattr(ti, "task_id", None)),
            ("run", getattr(ti, "run_id", None)),
            ("try", getattr(ti, "try_number", None)),
        )
        if value is not None
    )
    error = context.get("exception")
    if isinstance(error, ClearoutCreditsError):
        headline = "Clearout credits are low: the task stopped before spending"
    else:
        headline = "Task failed"
    detail = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "")
    detail = _ADDRESS.sub(lambda m: mask_email(m.group()), detail)
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 1] + "…"
    return f"{headline} ({where})" + (f": {detail}" if detail else "")


class ClearoutFailureNotifier(BaseNotifier):
    """Log a failed task's :func:`failure_message`; post it to ``webhook_conn_id`` when that exists.

    :param webhook_conn_id: connection whose host is the webhook URL; missing: log only. Templated.
    :param timeout: seconds the webhook may take to answer.
    """

    template_fields: Sequence[str] = ("webhook_conn_id",)

    def __init__(self, webhook_conn_id: str = DEFAULT_WEBHOOK_CONN_ID, *, timeout: float = 10.0) -> None:
        super().__init__()
        self.webhook_conn_id = webhook_conn_id
        self.timeout = timeout

    def notify(self, context: Any) -> None:
        message = failure_message(context)
        self.log.error("%s", message)
        url = self._webhook_url()
        if url is not None:
            self._post(url, message)

    def _webhook_url(self) -> str | None:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.log import mask_secret

        try:
            conn = Connection.get(self.webhook_conn_id)
        except AirflowNotFoundException:
            self.log.info("No connection %r: the failure is logged only", self.webhook_conn_id)
            return None
        host = (conn.host or "").strip()
        if not host:
            self.log.warning("Connection %r has no host (the webhook URL): not posted", self.webhook_conn_id)
            return None
        if "://" not in host:
            port = f":{conn.port}" if conn.port else ""
            host = f"{conn.schema or 'https'}://{host}{port}"
        mask_secret(host)
        return host

    def _post(self, url: str, message: str) -> None:
        import requests

        try:
            answer = requests.post(url, json={"text": message}, timeout=self.timeout)
        except requests.RequestException as error:  # its text names the URL: log the class only
            self.log.warning("Webhook %r not reached (%s)", self.webhook_conn_id, type(error).__name__)
            return
        if answer.ok:
            self.log.info("Failure posted to webhook %r", self.webhook_conn_id)
        else:
            self.log.warning("Webhook %r answered HTTP %d", self.webhook_conn_id, answer.status_code)
