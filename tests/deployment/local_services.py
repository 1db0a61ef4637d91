"""What deployment tests run against: the machine's PostgreSQL and Redis, and an S3 server of their own.

On the project's machines PostgreSQL listens on 127.0.0.1:5432 (trust auth) and Redis on
127.0.0.1:6379. A test that needs one calls the helpers here: without the service it SKIPS, saying
which one is missing (a laptop), except under ``CI=true``, where a missing service is a FAILURE: the
CI machine is meant to prove these topologies, and a silent skip would hide that it did not.

The S3-compatible object store is moto's server (a ``dev`` dependency), started by the test on a free
loopback port (:func:`s3_server`): nothing to probe, it is always there.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import pytest

from clearout_provider.sandbox.process import free_port

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DBS = range(15, 0, -1)  # claimed from the top: db 0 is everybody's default
#: Connecting to a local PostgreSQL / Redis: refused at once when down, but a busy machine may take seconds
#: to fork a backend and authenticate, and a too-short limit would SKIP the test as if it were down.
PROBE_TIMEOUT = 30
#: Ceiling for moto's server to answer after it was started (idle: ~2 s; it imports every AWS service).
S3_STARTUP_TIMEOUT = 300.0


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


# ------------------------------------------------------------------------------------ S3 (moto server)
@dataclass(frozen=True)
class S3Request:
    """One request the S3 server answered: who signed it (the access key id), the method, the object key
    (``""`` for a bucket-level call such as a listing)."""

    principal: str
    method: str
    key: str


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server on loopback with one bucket; it records every request it answers.

    moto accepts any access key id, so giving each process its own (:meth:`connection`) makes the
    recording say which process wrote or read each object (:meth:`requests`).
    """

    endpoint_url: str
    bucket: str
    recording: Path
    access_key: str = "clearout-test"
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def connection(self, access_key: str | None = None) -> str:
        """An Airflow ``aws`` connection to this server, as the JSON of an ``AIRFLOW_CONN_*`` variable:
        what ``ObjectStoragePath("s3://<conn_id>@bucket/...")`` authenticates with (providers-amazon)."""
        extra = {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"}
        login = access_key or self.access_key
        return json.dumps({"conn_type": "aws", "login": login, "password": self.secret_key, "extra": extra})

    def client(self) -> Any:
        """A boto3 S3 client, for the test to look into the bucket."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def requests(self) -> list[S3Request]:
        """Every request answered so far on this bucket, in order (moto's request recording)."""
        found = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            auth = {k.lower(): v for k, v in entry["headers"].items()}.get("authorization", "")
            principal = auth.partition("Credential=")[2].partition("/")[0]
            bucket, _, key = unquote(urlsplit(entry["url"]).path).lstrip("/").partition("/")
            if bucket == self.bucket:
                found.append(S3Request(principal, entry["method"], key))
        return found


@contextmanager
def s3_server(bucket: str, folder: Path) -> Iterator[S3Server]:
    """moto's S3 server on a free 127.0.0.1 port, in a process of its own, with ``bucket`` created;
    stopped afterwards. Its log is ``folder/moto.log``, its request recording ``folder/requests.jsonl``.

    A separate process rather than moto's in-thread server: the Airflow processes under test reach it
    like any remote store, and its request log does not mix into the test's output.
    """
    import botocore.exceptions

    port = free_port()
    recording = folder / "requests.jsonl"
    env = {**os.environ, "MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(recording)}
    moto = str(Path(sys.executable).with_name("moto_server"))
    log_path = folder / "moto.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [moto, "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{port}", bucket, recording)
    try:
        deadline = time.monotonic() + S3_STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                server.client().create_bucket(Bucket=bucket)
                break
            except botocore.exceptions.EndpointConnectionError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto_server did not answer within {S3_STARTUP_TIMEOUT}s") from None
                time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
