"""The machine's own PostgreSQL and Redis for deployment tests: probe, claim, clean up.

On the project's machines PostgreSQL listens on 127.0.0.1:5432 (trust auth) and Redis on
127.0.0.1:6379. A test that needs one calls the helpers here: without the service it SKIPS, saying
which one is missing (a laptop), except under ``CI=true``, where a missing service is a FAILURE: the
CI machine is meant to prove these topologies, and a silent skip would hide that it did not.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DBS = range(15, 0, -1)  # claimed from the top: db 0 is everybody's default
#: Connecting to a local PostgreSQL / Redis: refused at once when down, but a busy machine may take seconds
#: to fork a backend and authenticate, and a too-short limit would SKIP the test as if it were down.
PROBE_TIMEOUT = 30


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI=true, where the services are part of the machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


# ------------------------------------------------------------------------------------------- PostgreSQL
@dataclass
class Postgres:
    user: str
    database: str

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@{PG_HOST}:{PG_PORT}/{self.database}"


def _admin(user: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=PROBE_TIMEOUT
    )
    conn.autocommit = True
    return conn


@contextmanager
def postgres_database(prefix: str) -> Iterator[Postgres]:
    """A throwaway database named ``<prefix>_<random>`` (trust auth as ``postgres`` or ``root``),
    dropped afterwards."""
    import psycopg2

    errors = []
    for user in ("postgres", "root"):
        try:
            admin = _admin(user)
            break
        except psycopg2.OperationalError as exc:
            errors.append(f"{user}: {str(exc).strip()}")
    else:
        unavailable(
            f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} with trust auth ({'; '.join(errors)})"
        )
    database = f"{prefix}_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    admin.close()
    try:
        yield Postgres(user, database)
    finally:
        admin = _admin(user)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


# ------------------------------------------------------------------------------------------------ Redis
def redis_client(db: int = 0) -> Any:
    """A client of the local Redis, after a PING: skips (fails under CI=true) when Redis is not there."""
    import redis

    client = redis.Redis(
        host=REDIS_HOST,
        port=REDIS_PORT,
        db=db,
        socket_connect_timeout=PROBE_TIMEOUT,
        socket_timeout=PROBE_TIMEOUT,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable on {REDIS_HOST}:{REDIS_PORT} ({exc})")
    return client


def subscribers(client: Any, channel: str) -> int:
    """How many clients are subscribed to pub/sub ``channel`` now (``PUBSUB NUMSUB``): an Asset watcher
    on it is listening once this is at least 1 (a message published before is lost)."""
    return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))


@contextmanager
def redis_database() -> Iterator[str]:
    """The URL of an empty Redis database number of this test's own (claimed with a marker key),
    flushed afterwards."""
    marker = f"clearout-provider-test:{secrets.token_hex(4)}"
    redis_client()
    for number in REDIS_DBS:
        client = redis_client(number)
        if client.dbsize() == 0 and client.set(marker, "1", nx=True):
            break
    else:
        unavailable(f"no empty Redis database number on {REDIS_HOST}:{REDIS_PORT}")
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{number}"
    finally:
        client.flushdb()
