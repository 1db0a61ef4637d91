"""The Redis pub/sub trigger behind signup_asset(), run as the triggerer runs it, against the local Redis.

Pins what clearout_provider.signup_events is built on: the payload shape of a message (which
extract_signups reads, here through the Task SDK's own asset event model), that the trigger ends after
its FIRST message (so the watcher is restarted per message: the at-most-once caveat), and that data
which is not UTF-8 makes the trigger raise. A new provider release that changes any of these fails
here first. Without Redis the tests skip, except under ``CI=true`` (tests/deployment/local_services.py).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
from airflow.triggers.base import BaseTrigger, TriggerEvent
from local_services import REDIS_HOST, REDIS_PORT, redis_client

from clearout_provider.signup_events import extract_signups, signup_asset

#: Ceiling of each wait (subscription, first event): a busy machine is slow, not stuck.
WAIT = 60.0


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> Any:
    client = redis_client()
    connection = {"conn_type": "redis", "host": REDIS_HOST, "port": REDIS_PORT}
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_SIGNUPS", json.dumps(connection))
    return client


def rebuilt(trigger: BaseTrigger) -> BaseTrigger:
    """What the triggerer does with a watcher's trigger: import its classpath, call it with its kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


async def subscribed(redis: Any, channel: str) -> None:
    async with asyncio.timeout(WAIT):
        while not dict(redis.pubsub_numsub(channel)).get(channel.encode()):
            await asyncio.sleep(0.05)


async def first_event(run: AsyncIterator[TriggerEvent]) -> TriggerEvent:
    async with asyncio.timeout(WAIT):
        return await anext(run)


async def test_one_message_becomes_one_signup_and_the_trigger_ends(redis: Any) -> None:
    channel = f"test.{secrets.token_hex(4)}"
    asset = signup_asset(channel, "redis_signups", poll_interval=0.05)
    run = rebuilt(asset.watchers[0].trigger).run()
    pending = asyncio.ensure_future(first_event(run))
    await subscribed(redis, channel)
    redis.publish(channel, json.dumps({"identity": "u-1", "email": "ann@example.com"}))
    redis.publish(channel, "u-2")  # already received by the trigger's connection: dropped with it
    event = await pending

    assert event.payload == {
        "type": "message",
        "pattern": None,
        "channel": channel,
        "data": '{"identity": "u-1", "email": "ann@example.com"}',
    }
    # The trigger is done after one message: the triggerer must start it again for the next one.
    with pytest.raises(StopAsyncIteration):
        await anext(run)

    # Trigger.submit_event's extra, through the Task SDK's model (it admits JSON values only).
    reference = AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name=asset.name, uri=asset.uri, extra=asset.extra),
        extra={"from_trigger": True, "payload": event.payload},
        source_task_id=None,
        source_dag_id=None,
        source_run_id=None,
        source_map_index=None,
        source_aliases=[],
        timestamp=datetime.now(UTC),
    )
    batch = extract_signups(TriggeringAssetEventsAccessor.build([reference]), asset)
    assert [(s.identity, s.email, s.channel) for s in batch.signups] == [("u-1", "ann@example.com", channel)]


async def test_data_that_is_not_utf8_makes_the_trigger_raise(redis: Any) -> None:
    channel = f"test.{secrets.token_hex(4)}"
    run = rebuilt(signup_asset(channel, "redis_signups", poll_interval=0.05).watchers[0].trigger).run()
    pending = asyncio.ensure_future(first_event(run))
    await subscribed(redis, channel)
    redis.publish(channel, b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        await pending
