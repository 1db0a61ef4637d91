"""Sign-up messages → SignupEvent values: parsing, extraction from real AssetEvent objects, the asset.

The asset events are built with the Task SDK's own classes (``AssetEventDagRunReferenceResult`` inside a
``TriggeringAssetEventsAccessor``, what a task's ``triggering_asset_events`` is), with the ``extra`` that
``Trigger.submit_event`` writes for the Redis pub/sub trigger's payload.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

from clearout_provider.signup_events import (
    EVENTS_EXTRA,
    MAX_MESSAGE_CHARS,
    PREVIEW_CHARS,
    EventsExtraNotInstalledError,
    MalformedSignupError,
    SignupEvent,
    extract_signups,
    parse_signup_payload,
    signup_asset,
)

CHANNEL = "clevertap.signups"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pubsub_extra(data: Any, channel: str = CHANNEL) -> dict[str, Any]:
    """The asset event extra for one message of the Redis provider's AwaitMessageTrigger."""
    return {
        "from_trigger": True,
        "payload": {"type": "message", "pattern": None, "channel": channel, "data": data},
    }


def asset_event(asset: Asset, extra: dict[str, Any], seconds: float = 0) -> AssetEventDagRunReferenceResult:
    return AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name=asset.name, uri=asset.uri, extra=asset.extra),
        extra=extra,
        source_task_id=None,
        source_dag_id=None,
        source_run_id=None,
        source_map_index=None,
        source_aliases=[],
        timestamp=T0 + timedelta(seconds=seconds),
    )


def accessor(*events: AssetEventDagRunReferenceResult) -> TriggeringAssetEventsAccessor:
    return TriggeringAssetEventsAccessor.build(events)


@pytest.fixture(scope="module")
def asset() -> Asset:
    return signup_asset()


# ------------------------------------------------------------------------------------------------ parsing
def test_a_json_object_with_identity_and_email() -> None:
    signup = parse_signup_payload('{"identity": "u-1", "email": " Ann@Example.com ", "other": 1}')
    assert signup == SignupEvent("u-1", "Ann@Example.com", "", None)


@pytest.mark.parametrize(
    ("text", "identity", "email"),
    [
        ('{"identity": "u-1"}', "u-1", None),
        ('{"identity": "u-1", "email": null}', "u-1", None),
        ('{"identity": "u-1", "email": "  "}', "u-1", None),
        ('{"Identity": 12345, "Email": "a@b.io"}', "12345", "a@b.io"),
        ('"u-2"', "u-2", None),
        ("u-3", "u-3", None),
        ("  12345\n", "12345", None),
        ("123abc", "123abc", None),
        (b'{"identity": "caf\xc3\xa9"}', "café", None),
        (bytearray(b"u-4"), "u-4", None),
    ],
)
def test_accepted_shapes(text: str | bytes, identity: str, email: str | None) -> None:
    signup = parse_signup_payload(text, channel="c", received_at=T0)
    assert (signup.identity, signup.email, signup.channel, signup.received_at) == (identity, email, "c", T0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty message"),
        ("   ", "empty message"),
        ('{"identity": "x"', "not valid JSON"),
        ("[1, 2]", "identity is a list, not a string"),
        ("{}", "identity is missing"),
        ('{"email": "ann@example.com"}', "identity is missing"),
        ('{"identity": ""}', "identity is blank"),
        ('{"identity": true}', "identity is a bool, not a string"),
        ('{"identity": 1.5}', "identity is a float, not a string"),
        ('{"identity": {"id": 1}}', "identity is a dict, not a string"),
        ('{"identity": "a\\u0000b"}', "identity contains control characters"),
        ('{"identity": "u", "email": 7}', "email is a int, not a string"),
        ("null", "JSON null is not an identity"),
        ("two words", "a bare identity cannot contain whitespace"),
        (b"\xff\xfe\x00", "not UTF-8 text"),
        ("x" * (MAX_MESSAGE_CHARS + 1), f"longer than {MAX_MESSAGE_CHARS} characters"),
    ],
)
def test_malformed_messages_raise_one_named_error(text: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedSignupError) as info:
        parse_signup_payload(text)
    assert info.value.reason == reason
    # No json (or codec) traceback chained to it: nothing raised inside, or the context suppressed.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert str(info.value).startswith(f"Malformed sign-up message: {reason} (message: ")


def test_a_malformed_message_shows_only_a_short_masked_preview() -> None:
    text = '{"identity": "x", "email": "john.doe@example.com", "note": "' + "z" * 500
    with pytest.raises(MalformedSignupError) as info:
        parse_signup_payload(text)
    assert "john.doe" not in str(info.value) and "j***@example.com" in info.value.preview
    assert len(info.value.preview) <= PREVIEW_CHARS and info.value.preview.endswith("…")


def test_the_repr_of_a_signup_masks_the_email() -> None:
    text = repr(SignupEvent("ann@example.com", "ann.smith@example.com", CHANNEL, T0))
    assert "ann@" not in text and "ann.smith" not in text and text.count("a***@example.com") == 2


# --------------------------------------------------------------------------------------------- extraction
def test_extracts_from_the_watchers_asset_events(asset: Asset) -> None:
    events = accessor(
        asset_event(asset, pubsub_extra('{"identity": "u-1", "email": "ann@example.com"}'), 0),
        asset_event(asset, pubsub_extra("u-2"), 1),
    )
    batch = extract_signups(events, asset)
    assert batch.signups == (
        SignupEvent("u-1", "ann@example.com", CHANNEL, T0),
        SignupEvent("u-2", None, CHANNEL, T0 + timedelta(seconds=1)),
    )
    assert batch.rejected == () and batch.duplicates == 0
    assert extract_signups(events) == batch  # without the asset: every event of the run


def test_duplicates_fold_into_one_signup_the_latest_wins(asset: Asset) -> None:
    events = accessor(
        asset_event(asset, pubsub_extra('{"identity": "u-1", "email": "old@example.com"}'), 2),
        asset_event(asset, pubsub_extra('{"identity": "u-2"}'), 3),
        asset_event(asset, pubsub_extra('{"identity": "u-1", "email": "new@example.com"}'), 4),
        asset_event(asset, pubsub_extra('{"identity": "u-1"}'), 5),  # no email: keeps new@
        asset_event(asset, pubsub_extra('{"identity": "u-0"}'), 1),  # delivered late, earliest timestamp
    )
    batch = extract_signups(events, asset)
    assert [(s.identity, s.email) for s in batch.signups] == [
        ("u-0", None),
        ("u-1", "new@example.com"),
        ("u-2", None),
    ]
    assert batch.signups[1].received_at == T0 + timedelta(seconds=5) and batch.duplicates == 2


def test_malformed_messages_are_rejected_never_failing_the_batch(
    asset: Asset, caplog: pytest.LogCaptureFixture
) -> None:
    bad_payloads: list[dict[str, Any]] = [
        pubsub_extra('{"identity": "x", "email": "bob@example.com"'),
        pubsub_extra(None),
        {"from_trigger": True, "payload": {"type": "subscribe", "channel": CHANNEL, "data": 1}},
        {"from_trigger": True, "payload": {"type": "message", "channel": CHANNEL}},
        {"from_trigger": True, "payload": "u-9"},
        {"identity": "u-9"},  # an event created by hand, not by the watcher
    ]
    events = accessor(
        *(asset_event(asset, extra, i) for i, extra in enumerate(bad_payloads)),
        asset_event(asset, pubsub_extra('{"identity": "u-1"}'), 99),
    )
    with caplog.at_level(logging.INFO, logger="clearout_provider.signup_events"):
        batch = extract_signups(events, asset)
    assert [s.identity for s in batch.signups] == ["u-1"]
    assert [r.reason for r in batch.rejected] == [
        "not valid JSON",
        "expected text, got NoneType",
        "pub/sub entry of type 'subscribe', not a message",
        "pub/sub message without data",
        "not a message from the pub/sub watcher",
        "not a message from the pub/sub watcher",
    ]
    assert "bob@example.com" not in caplog.text and "b***@example.com" in caplog.text
    assert "1 sign-up(s) from 7 asset event(s): 0 duplicate(s) folded, 6 rejected" in caplog.text


@dataclass(frozen=True)
class RawEvent:
    """An asset event from elsewhere than the Task SDK (bytes in it: the SDK's model allows JSON only)."""

    extra: dict[str, Any]
    timestamp: datetime = T0


def test_bytes_from_other_sources_are_decoded_and_a_missing_channel_falls_back(asset: Asset) -> None:
    raw = {"from_trigger": True, "payload": {"type": "message", "channel": b"raw", "data": b"a"}}
    not_utf8 = {"from_trigger": True, "payload": {"type": "message", "channel": CHANNEL, "data": b"\xff"}}
    no_channel = {"from_trigger": True, "payload": {"type": "pmessage", "data": "b"}}
    batch = extract_signups({asset: [RawEvent(raw), RawEvent(not_utf8), RawEvent(no_channel)]}, asset)
    assert [(s.identity, s.channel) for s in batch.signups] == [("a", "raw"), ("b", CHANNEL)]
    assert [r.reason for r in batch.rejected] == ["not UTF-8 text"]


def test_only_the_given_assets_events(asset: Asset) -> None:
    other = signup_asset("other.channel")
    events = accessor(
        asset_event(asset, pubsub_extra("mine")),
        asset_event(other, pubsub_extra("theirs", "other.channel"), 1),
    )
    assert [s.identity for s in extract_signups(events, asset).signups] == ["mine"]
    assert [s.identity for s in extract_signups(events, other).signups] == ["theirs"]
    assert [s.identity for s in extract_signups(events).signups] == ["mine", "theirs"]
    assert extract_signups(accessor(), asset).signups == ()


def test_as_dict_is_json_ready() -> None:
    signup = SignupEvent("u-1", None, CHANNEL, T0)
    assert json.loads(json.dumps(signup.as_dict())) == {
        "identity": "u-1",
        "email": None,
        "channel": CHANNEL,
        "received_at": "2026-03-01T12:00:00+00:00",
    }


# ---------------------------------------------------------------------------------------------- the asset
def test_the_asset_watches_the_channel_through_the_redis_pubsub_trigger() -> None:
    asset = signup_asset("clevertap.signups", "redis_signups", poll_interval=0.5)
    assert asset.name == "signups.clevertap.signups"
    assert asset.extra == {"channel": "clevertap.signups", "scheme": "redis+pubsub"}
    [watcher] = asset.watchers
    assert watcher.name == "signups.clevertap.signups.redis-pubsub"
    # What the triggerer will run: the Redis provider's trigger, rebuilt from these kwargs.
    assert watcher.trigger.serialize() == (
        "airflow.providers.redis.triggers.redis_await_message.AwaitMessageTrigger",
        {"channels": ["clevertap.signups"], "redis_conn_id": "redis_signups", "poll_interval": 0.5},
    )
    assert signup_asset(name="custom").name == "custom"


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"channel": " "}, "channel"), ({"poll_interval": 0}, "poll")]
)
def test_bad_asset_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        signup_asset(**kwargs)


@pytest.mark.parametrize(
    "missing", ["airflow.providers.common.messaging", "airflow.providers.redis"], ids=["messaging", "redis"]
)
def test_a_missing_provider_names_the_events_extra(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == missing else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(EventsExtraNotInstalledError, match=r"events extra") as info:
        signup_asset()
    assert EVENTS_EXTRA in str(info.value) and isinstance(info.value, ImportError)
    dist = "apache-airflow-providers-" + ("common-messaging" if "messaging" in missing else "redis")
    assert dist in str(info.value)


def test_a_broken_messaging_import_names_the_events_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.common.messaging.triggers.msg_queue", None)
    with pytest.raises(EventsExtraNotInstalledError, match=r"install the events extra"):
        signup_asset()
