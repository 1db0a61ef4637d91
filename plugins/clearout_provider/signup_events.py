"""Sign-ups as Airflow 3 asset events: an Asset watched on a Redis pub/sub channel.

Why an asset watcher: real-time validation of a new sign-up (seed 004) must start seconds after the
sign-up, without a sensor holding a worker slot or a schedule polling every minute. An
:class:`~airflow.sdk.AssetWatcher` runs a trigger in the triggerer; each message the trigger yields
becomes an asset event, and a DAG scheduled on the asset runs with those events in
``triggering_asset_events``. :func:`signup_asset` builds that asset; :func:`extract_signups` turns the
events of one run into :class:`SignupEvent` values, deduplicated, without ever failing on a bad message.

The trigger is common-messaging's ``MessageQueueTrigger(scheme="redis+pubsub")``, which dispatches to
the Redis provider's ``AwaitMessageTrigger`` (what is actually serialized and run by the triggerer).
Each message becomes an asset event whose ``extra`` is ``{"from_trigger": True, "payload": message}``
(``Trigger.submit_event``), ``message`` being redis-py's pub/sub dict, with channel and data decoded
from UTF-8 by the trigger::

    {"type": "message", "pattern": None, "channel": "clevertap.signups", "data": "<the published text>"}

A message is a JSON object ``{"identity": "...", "email": "..."}`` (``email`` optional) or a bare
identity string; see :func:`parse_signup_payload`.

Delivery caveats, measured with tests/deployment/test_signup_events_stack.py (real api-server, dag-processor,
scheduler and triggerer, LocalExecutor, 2 busy cores) and pinned by
tests/integration/test_signup_trigger_redis.py. Redis pub/sub keeps nothing for a subscriber that is
not connected, so:

- **At most once, one message per trigger cycle.** ``AwaitMessageTrigger`` subscribes, yields the FIRST
  message and returns; the triggerer starts the watcher again 1-2 s later (one or two of its 1 s
  loops; measured 1.0-2.0 s), with a new connection and a new subscription. Messages published in that gap,
  and any the old connection had already received but not read, are lost: a burst of 5 messages
  published back to back gave exactly 1 asset event (the first message) and 1 DAG run; the other 4
  were lost. The watcher then takes messages again. So this fits a trickle of sign-ups (well under one
  per 2 s), not bursts; where every sign-up matters, also write them somewhere durable (a Redis list or
  stream, or CleverTap itself) for a batch DAG to catch up, and treat these events as the fast path.
- **Nothing is received for up to ~30 s after unpausing.** The dag-processor registers the watcher's
  trigger only for assets that an unpaused DAG is scheduled on, and only when it next parses the DAG
  file (``[dag_processor] min_file_process_interval``, 30 s by default); the triggerer then subscribes
  within a second or two. Measured: 22-27 s from unpausing (REST) to ``PUBSUB NUMSUB <channel>`` >= 1.
  Pausing stops the watcher the same way. Messages published before the subscription are lost.
- **Latency**: publish to the end of the consuming task took about 6 s (trigger poll interval,
  triggerer loop, scheduler loop, task start-up).
- **Data that is not UTF-8 kills the trigger** (its ``bytes.decode("utf-8")`` raises in the triggerer;
  "Trigger ... exited with error"); the triggerer starts the watcher again about 1 s later, and that
  message is lost. Bytes that do reach :func:`extract_signups` (another trigger, a test) are decoded
  here and rejected if not UTF-8. (The Task SDK's asset event model admits JSON values only.)
- Events that arrive before the scheduler creates the run are delivered to ONE run together: always
  use :func:`extract_signups` over all events of the run, never only the first.

Personal data: emails never reach a log line unmasked (:func:`clearout_provider.masking.mask_email`),
and a rejected message is kept only as a short masked preview.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from clearout_provider.exceptions import InputError
from clearout_provider.masking import mask_email

if TYPE_CHECKING:
    from airflow.sdk import Asset

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "clevertap.signups"
DEFAULT_REDIS_CONN_ID = "redis_default"
#: Every sign-up asset's name starts with this, so the assets group together in the UI.
ASSET_PREFIX = "signups."
#: The common-messaging scheme the Redis provider registers for pub/sub channels.
REDIS_PUBSUB_SCHEME = "redis+pubsub"
#: What to install when the messaging providers are missing (named in the error).
EVENTS_EXTRA = "airflow-provider-clearout[events]"
#: Longest message text parsed; anything larger is not a sign-up and is rejected unread.
MAX_MESSAGE_CHARS = 64 * 1024
#: Characters of a rejected message kept (masked) for the log and the batch.
PREVIEW_CHARS = 80

_EMAIL_LIKE = re.compile(r"[^\s\"'<>(),;:{}\[\]]+@[^\s\"'<>(),;:{}\[\]]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Bare words that are JSON values, not identities (a publisher that serialised a missing value).
_JSON_WORDS = frozenset({"null", "true", "false"})


class EventsExtraNotInstalledError(ImportError):
    """The Redis / common-messaging providers behind :func:`signup_asset` are not installed.

    An ImportError, so code that treats the watcher as optional can catch it as one; its message says
    which extra to install, instead of a bare ``No module named airflow.providers.common.messaging``.
    """


class MalformedSignupError(InputError, ValueError):
    """A pub/sub message that is not a sign-up; ``reason`` says why, ``preview`` is the masked text.

    Raised by :func:`parse_signup_payload` in place of the JSON parser's own error, so callers get one
    exception type and a message that is safe to log (no raw email, no traceback of json internals).
    """

    def __init__(self, reason: str, preview: str) -> None:
        super().__init__(f"Malformed sign-up message: {reason} (message: {preview!r})")
        self.reason = reason
        self.preview = preview


@dataclass(frozen=True, repr=False)
class SignupEvent:
    """One sign-up: the CleverTap identity, the email if the message carried one, where and when.

    ``received_at`` is the asset event's timestamp (when Airflow recorded the message), and
    ``channel`` the Redis channel it came from.
    """

    identity: str
    email: str | None
    channel: str
    received_at: datetime | None

    def __repr__(self) -> str:
        # Dataclass reprs end up in logs and exception messages: never show the raw address.
        email = mask_email(self.email) if self.email is not None else None
        return (
            f"SignupEvent(identity={mask_text(self.identity)!r}, email={email!r}, "
            f"channel={self.channel!r}, received_at={self.received_at!r})"
        )

    def as_dict(self) -> dict[str, str | None]:
        """JSON-ready (for XCom or a file): ``received_at`` as ISO 8601."""
        return {
            "identity": self.identity,
            "email": self.email,
            "channel": self.channel,
            "received_at": self.received_at.isoformat() if self.received_at else None,
        }


class Rejection(NamedTuple):
    """A message that was not a sign-up: why, and a masked preview of what it said."""

    reason: str
    preview: str


@dataclass(frozen=True)
class SignupBatch:
    """The sign-ups of one DAG run, deduplicated by identity, and the messages that were rejected.

    ``duplicates`` counts the messages folded into an earlier sign-up of the same identity.
    """

    signups: tuple[SignupEvent, ...]
    rejected: tuple[Rejection, ...] = ()
    duplicates: int = 0


class AssetEventLike(Protocol):
    """What :func:`extract_signups` reads of an asset event (the task context's
    ``AssetEventDagRunReferenceResult`` has both)."""

    @property
    def extra(self) -> Mapping[str, Any]: ...

    @property
    def timestamp(self) -> datetime: ...


# --------------------------------------------------------------------------------------------- the asset
def signup_asset(
    channel: str = DEFAULT_CHANNEL,
    redis_conn_id: str = DEFAULT_REDIS_CONN_ID,
    *,
    name: str | None = None,
    poll_interval: float = 1.0,
) -> Asset:
    """The Asset ``signups.<channel>``, updated by a watcher subscribed to the Redis pub/sub ``channel``.

    Schedule a DAG on it (``schedule=[signup_asset()]``) and read the run's sign-ups with
    :func:`extract_signups`. ``redis_conn_id`` is resolved by the triggerer (an ``AIRFLOW_CONN_*``
    variable or the secrets backend; ``{"db": N}`` in the extra picks the database number, which pub/sub
    ignores). ``poll_interval`` is how long the trigger sleeps after finding no message: the Redis
    provider's default of 60 s would add up to a minute of latency, 1 s costs one cheap local read per
    second. The channel is subscribed literally (no glob patterns).

    Raises :class:`EventsExtraNotInstalledError` when the messaging providers are not installed.
    """
    if not isinstance(channel, str) or not channel.strip():
        raise ValueError(f"channel must be a non-empty Redis channel name, got {channel!r}")
    if not poll_interval > 0:
        raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
    trigger_class = _message_queue_trigger()

    from airflow.sdk import Asset, AssetWatcher

    asset_name = name or f"{ASSET_PREFIX}{channel}"
    trigger = trigger_class(
        scheme=REDIS_PUBSUB_SCHEME,
        channels=[channel],
        redis_conn_id=redis_conn_id,
        poll_interval=poll_interval,
    )
    return Asset(
        name=asset_name,
        # The channel in the asset itself: extract_signups falls back to it, and the UI shows it.
        extra={"channel": channel, "scheme": REDIS_PUBSUB_SCHEME},
        watchers=[AssetWatcher(name=f"{asset_name}.redis-pubsub", trigger=trigger)],
    )


def _message_queue_trigger() -> type[Any]:
    """common-messaging's MessageQueueTrigger, after checking the Redis provider is there to serve it.

    Imported here, not at module level: the rest of this module (parsing, extraction) works without
    the extra, and importing msg_queue initialises every provider's queue registry. Without the Redis
    provider the trigger would only fail later, when serialized ("scheme not recognized").
    """
    from importlib.util import find_spec

    missing = [
        dist
        for module, dist in (
            ("airflow.providers.common.messaging", "apache-airflow-providers-common-messaging"),
            ("airflow.providers.redis", "apache-airflow-providers-redis"),
        )
        if _find(find_spec, module) is None
    ]
    if missing:
        raise EventsExtraNotInstalledError(
            f"signup_asset() needs {' and '.join(missing)}: install the events extra "
            f"(pip install '{EVENTS_EXTRA}')"
        )
    try:
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    except ImportError as exc:
        raise EventsExtraNotInstalledError(
            f"signup_asset() could not import the messaging providers ({exc}): "
            f"install the events extra (pip install '{EVENTS_EXTRA}')"
        ) from exc
    return MessageQueueTrigger


def _find(find_spec: Any, module: str) -> object | None:
    """``find_spec`` that treats a missing parent package as "not installed" (it raises for those)."""
    try:
        return find_spec(module)
    except ModuleNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------ parsing
def parse_signup_payload(
    text: str | bytes, *, channel: str = "", received_at: datetime | None = None
) -> SignupEvent:
    """One published message → :class:`SignupEvent`, or :class:`MalformedSignupError` saying why.

    Accepted: a JSON object with ``identity`` (a non-empty string, or an integer) and optionally
    ``email`` (a string or null; blank means none); ``Identity`` / ``Email`` are accepted too (CleverTap's
    own spelling in profile data), other keys are ignored. Also a bare identity: a JSON string, or plain
    text without whitespace (``user-123``, ``12345``). Bytes must be UTF-8.
    """
    if isinstance(text, bytes | bytearray):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedSignupError("not UTF-8 text", _preview(raw.decode("utf-8", "replace"))) from None
    if not isinstance(text, str):
        raise MalformedSignupError(f"expected text, got {type(text).__name__}", _preview(repr(text)))
    if len(text) > MAX_MESSAGE_CHARS:
        raise MalformedSignupError(f"longer than {MAX_MESSAGE_CHARS} characters", _preview(text))
    stripped = text.strip()
    if not stripped:
        raise MalformedSignupError("empty message", _preview(text))
    value: Any
    if stripped[0] in '{["':
        try:
            value = json.loads(stripped)
        except ValueError:
            raise MalformedSignupError("not valid JSON", _preview(text)) from None
    elif stripped in _JSON_WORDS:
        raise MalformedSignupError(f"JSON {stripped} is not an identity", _preview(text))
    elif any(c.isspace() for c in stripped) or _CONTROL.search(stripped):
        raise MalformedSignupError("a bare identity cannot contain whitespace", _preview(text))
    else:
        value = stripped  # digits included: "12345" is the identity "12345", as CleverTap stores it

    if isinstance(value, dict):
        identity = _identity(_first(value, "identity", "Identity"), text)
        email = _email(_first(value, "email", "Email"), text)
    else:
        identity, email = _identity(value, text), None
    return SignupEvent(identity=identity, email=email, channel=channel, received_at=received_at)


def _first(obj: Mapping[str, Any], *keys: str) -> Any:
    return next((obj[k] for k in keys if k in obj), None)


def _identity(value: Any, text: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        what = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise MalformedSignupError(f"identity is {what}", _preview(text))
    identity = str(value).strip()
    if not identity:
        raise MalformedSignupError("identity is blank", _preview(text))
    if _CONTROL.search(identity):
        raise MalformedSignupError("identity contains control characters", _preview(text))
    return identity


def _email(value: Any, text: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedSignupError(f"email is a {type(value).__name__}, not a string", _preview(text))
    return value.strip() or None


def mask_text(text: str) -> str:
    """``text`` with every email-like token masked (``j***@example.com``): for log lines and previews."""
    return _EMAIL_LIKE.sub(lambda m: mask_email(m.group()), text)


def _preview(text: str) -> str:
    """The first :data:`PREVIEW_CHARS` characters, emails masked, control characters shown as ``?``.

    Masked BEFORE cutting, so a cut never leaves the local part of an address without its ``@``.
    """
    masked = _CONTROL.sub("?", mask_text(text[: PREVIEW_CHARS * 4]))
    return masked if len(masked) <= PREVIEW_CHARS else masked[: PREVIEW_CHARS - 1] + "…"


# --------------------------------------------------------------------------------------------- extraction
def extract_signups(
    triggering_asset_events: Mapping[Any, Sequence[AssetEventLike]],
    asset: Asset | None = None,
) -> SignupBatch:
    """The sign-ups in a run's ``triggering_asset_events`` (the task context's mapping).

    ``asset`` limits the extraction to that asset's events (a DAG scheduled on several assets); without
    it every event is read once (an event listed under an alias too is not counted twice). A message
    that is not a sign-up (bad JSON, no identity, not from the watcher) goes to ``rejected`` with the
    reason and a masked preview, and a warning is logged: one bad publisher never fails the batch.

    Deduplication by identity: the latest message wins (its email and ``received_at``), except that a
    message without an email keeps the email an earlier one carried; the order is that of the first
    message of each identity.
    """
    if asset is not None:
        try:
            groups: Iterable[Sequence[AssetEventLike]] = [triggering_asset_events[asset]]
        except KeyError:
            groups = []
        fallback_channel = str((asset.extra or {}).get("channel", ""))
    else:
        groups = triggering_asset_events.values()
        fallback_channel = ""

    seen_events: set[int] = set()
    events: list[AssetEventLike] = []
    for group in groups:
        for event in group:
            if id(event) not in seen_events:
                seen_events.add(id(event))
                events.append(event)
    events.sort(key=_timestamp_key)

    by_identity: dict[str, SignupEvent] = {}
    rejected: list[Rejection] = []
    duplicates = 0
    for event in events:
        try:
            signup = _signup_from_event(event, fallback_channel)
        except MalformedSignupError as exc:
            rejected.append(Rejection(exc.reason, exc.preview))
            log.warning("Rejected a sign-up message: %s (message: %r)", exc.reason, exc.preview)
            continue
        earlier = by_identity.get(signup.identity)
        if earlier is not None:
            duplicates += 1
            if signup.email is None and earlier.email is not None:
                signup = SignupEvent(signup.identity, earlier.email, signup.channel, signup.received_at)
        by_identity[signup.identity] = signup
    batch = SignupBatch(signups=tuple(by_identity.values()), rejected=tuple(rejected), duplicates=duplicates)
    log.info(
        "%d sign-up(s) from %d asset event(s): %d duplicate(s) folded, %d rejected",
        len(batch.signups),
        len(events),
        duplicates,
        len(rejected),
    )
    return batch


def _timestamp_key(event: AssetEventLike) -> tuple[int, float]:
    """Sort key: by timestamp, events without one first (sort is stable, so they keep their order)."""
    timestamp = getattr(event, "timestamp", None)
    return (1, timestamp.timestamp()) if isinstance(timestamp, datetime) else (0, 0.0)


def _signup_from_event(event: AssetEventLike, fallback_channel: str) -> SignupEvent:
    """One asset event → one sign-up; the shape is the Redis pub/sub trigger's (module docstring)."""
    extra = getattr(event, "extra", None)
    payload = extra.get("payload") if isinstance(extra, Mapping) else None
    if not isinstance(extra, Mapping) or not extra.get("from_trigger") or not isinstance(payload, Mapping):
        raise MalformedSignupError("not a message from the pub/sub watcher", _preview(_short_repr(extra)))
    if payload.get("type") not in ("message", "pmessage"):
        raise MalformedSignupError(
            f"pub/sub entry of type {payload.get('type')!r}, not a message", _preview(_short_repr(payload))
        )
    if "data" not in payload:
        raise MalformedSignupError("pub/sub message without data", _preview(_short_repr(payload)))
    channel = payload.get("channel")
    if isinstance(channel, bytes | bytearray):
        channel = bytes(channel).decode("utf-8", "replace")
    timestamp = getattr(event, "timestamp", None)
    return parse_signup_payload(
        payload["data"],
        channel=channel if isinstance(channel, str) else fallback_channel,
        received_at=timestamp if isinstance(timestamp, datetime) else None,
    )


def _short_repr(value: object) -> str:
    try:
        return json.dumps(value, default=repr)[: PREVIEW_CHARS * 4]
    except ValueError:  # a circular structure: not from JSON, say only what it is
        return type(value).__name__
