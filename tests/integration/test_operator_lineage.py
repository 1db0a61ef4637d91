"""Each operator's OpenLineage facets after a real run against the sandbox (real hooks, loopback HTTP).

The witnesses are the sandbox's: the list and batch ids it created, its call counters, and the profiles as
CleverTap returns them afterwards. A pipeline's jobs connect in Marquez only through datasets named alike,
so each test also checks that one task's output is the next task's input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
from openlineage.client.serde import Serde

from clearout_provider.demo import sandbox_connections
from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.hooks.clevertap_export import as_text
from clearout_provider.lineage import PROFILES, segment_name
from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator
from clearout_provider.operators.clevertap import (
    CleverTapExtractProfilesOperator,
    CleverTapLoadVerificationOperator,
)
from clearout_provider.operators.instant_verify import ClearoutInstantVerifyOperator
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

SEGMENT = {"common_profile_properties": {"profile_fields": [{"name": "Email", "operator": "exists"}]}}


@pytest.fixture
def server(sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxProcess]:
    """A sandbox with a few CleverTap profiles; every connection points at it."""
    sandbox = sandbox_factory(SandboxSettings(seed_contacts=40, bulk_rate=20_000))
    for name, value in sandbox_connections(sandbox).items():
        monkeypatch.setenv(name, value)
    yield sandbox


def context(task_id: str) -> dict[str, Any]:
    """The part of an Airflow context the operators read (XCom pushes land on the mock)."""
    ti = mock.MagicMock(dag_id="lineage_dag", run_id="manual__1", task_id=task_id, map_index=-1, try_number=1)
    return {"ti": ti}


def project(server: SandboxProcess) -> str:
    return f"clevertap://eu1/{server.settings.clevertap_account_id}"  # the connection's default region


def authority(url: str) -> str:
    return urlsplit(url).netloc


def datasets(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def no_secret_in(lineage: Any, server: SandboxProcess) -> None:
    text = json.dumps([Serde.to_dict(d) for d in (*lineage.inputs, *lineage.outputs)])
    settings = server.settings
    for secret in (settings.clevertap_passcode, settings.clearout_token, settings.mailso_api_key):
        assert secret not in text


def extract(
    server: SandboxProcess, tmp_path: Path
) -> tuple[CleverTapExtractProfilesOperator, dict[str, Any]]:
    op = CleverTapExtractProfilesOperator(task_id="extract", query=json.dumps(SEGMENT), workdir=str(tmp_path))
    return op, op.execute(context("extract"))


def test_extract_instant_verify_and_load_name_segment_calls_and_the_properties_written(
    server: SandboxProcess, tmp_path: Path
) -> None:
    ext, extracted = extract(server, tmp_path)
    ext_lineage = ext.get_openlineage_facets_on_complete(mock.MagicMock())

    assert datasets(ext_lineage.inputs) == [(project(server), segment_name(SEGMENT))]
    [contacts] = ext_lineage.outputs
    assert contacts.outputFacets["outputStatistics"].rowCount == extracted["to_verify"] > 0

    verify = ClearoutInstantVerifyOperator(task_id="verify", source=extracted["path"], workdir=str(tmp_path))
    verified = verify.execute(context("verify"))
    verify_lineage = verify.get_openlineage_facets_on_complete(mock.MagicMock())

    assert datasets(verify_lineage.inputs) == datasets([contacts])  # the extract's file is the verify's
    [calls, result] = verify_lineage.outputs
    assert server.clearout_stats()["instant_calls"] == verified["sent"] > 0
    assert (calls.namespace, calls.name) == (f"clearout://{authority(server.clearout_url)}", "instant")
    assert result.outputFacets["outputStatistics"].rowCount == verified["rows"]

    load = CleverTapLoadVerificationOperator(
        task_id="load", result_path=verified["result_path"], workdir=str(tmp_path)
    )
    loaded = load.execute(context("load"))
    load_lineage = load.get_openlineage_facets_on_complete(mock.MagicMock())

    assert datasets(load_lineage.inputs) == datasets([result])
    [profiles] = load_lineage.outputs
    assert (profiles.namespace, profiles.name) == (project(server), PROFILES)
    written = {f.name: f.type for f in profiles.facets["schema"].fields}
    outcomes = pq.read_table(loaded["outcome_path"].removeprefix("file://")).to_pylist()
    applied = [o for o in outcomes if o["profile_update"] == "applied"]
    assert profiles.outputFacets["outputStatistics"].rowCount == len(applied) > 0
    assert set(written) == {p for o in applied for p in json.loads(o["changes"])}
    hook = CleverTapHook()
    for row in applied[:10]:  # what CleverTap holds now is what the schema says was written
        data = hook.get_profile(object_id=row["objectId"])["profileData"]
        for prop, change in json.loads(row["changes"]).items():
            assert prop in written
            now = None if data.get(prop) is None else as_text(data[prop])  # the export's text form
            assert now == change["to"], prop
    for lineage in (ext_lineage, verify_lineage, load_lineage):
        no_secret_in(lineage, server)


def test_a_dry_run_shows_no_vendor_and_no_profiles_written(server: SandboxProcess, tmp_path: Path) -> None:
    _, extracted = extract(server, tmp_path)
    dry = ClearoutInstantVerifyOperator(
        task_id="dry", source=extracted["path"], workdir=str(tmp_path), dry_run=True
    )
    dry.execute(context("dry"))
    [result] = dry.get_openlineage_facets_on_complete(mock.MagicMock()).outputs
    assert result.namespace == "file" and server.clearout_stats()["instant_calls"] == 0

    verify = ClearoutInstantVerifyOperator(task_id="verify", source=extracted["path"], workdir=str(tmp_path))
    verified = verify.execute(context("verify"))
    load = CleverTapLoadVerificationOperator(
        task_id="load", result_path=verified["result_path"], workdir=str(tmp_path), dry_run=True
    )
    load.execute(context("load"))

    assert load.get_openlineage_facets_on_complete(mock.MagicMock()).outputs == []
    stats = server.clevertap_stats()
    assert stats["dry_run_calls"] > 0 and stats.get("saving_upload_calls", 0) == 0


def test_a_clearout_bulk_list_is_the_lists_dataset_versioned_by_its_id(
    server: SandboxProcess, tmp_path: Path
) -> None:
    _, extracted = extract(server, tmp_path)
    verify = ClearoutBulkVerifyOperator(
        task_id="bulk", source=extracted["path"], workdir=str(tmp_path), deferrable=False, poll_interval=0.5
    )
    verified = verify.execute(context("bulk"))

    lineage = verify.get_openlineage_facets_on_complete(mock.MagicMock())

    [list_id] = server.clearout_stats()["lists"]
    assert verified["list_id"] == list_id
    [job, result] = lineage.outputs
    assert (job.namespace, job.name) == (f"clearout://{authority(server.clearout_url)}", "lists")
    assert job.facets["version"].datasetVersion == list_id
    assert result.outputFacets["outputStatistics"].rowCount == verified["rows"]
    no_secret_in(lineage, server)


def test_mailso_batches_and_calls_are_named_for_mailso(server: SandboxProcess, tmp_path: Path) -> None:
    _, extracted = extract(server, tmp_path)
    bulk = ClearoutBulkVerifyOperator(
        task_id="bulk",
        source=extracted["path"],
        verifier="mailso",
        workdir=str(tmp_path),
        deferrable=False,
        poll_interval=0.5,
    )
    bulk.execute(context("bulk"))
    [batches, _] = bulk.get_openlineage_facets_on_complete(mock.MagicMock()).outputs

    mailso = f"mailso://{authority(server.mailso_url)}"
    assert (batches.namespace, batches.name) == (mailso, "batches")
    assert batches.facets["version"].datasetVersion.split(",") == server.mailso_stats()["batches"]

    instant = ClearoutInstantVerifyOperator(
        task_id="instant", source=extracted["path"], verifier="mailso", workdir=str(tmp_path / "again"),
        freshness={"ttl_days": 0},  # ask Mail.so again rather than the ledger
    )  # fmt: skip
    instant.execute(context("instant"))
    [calls, _] = instant.get_openlineage_facets_on_complete(mock.MagicMock()).outputs
    assert (calls.namespace, calls.name) == (mailso, "validate")


def test_a_task_that_did_not_finish_shows_what_it_read_only(server: SandboxProcess, tmp_path: Path) -> None:
    ext = CleverTapExtractProfilesOperator(task_id="extract", query=SEGMENT, workdir=str(tmp_path))
    load = CleverTapLoadVerificationOperator(task_id="load", result_path="/data/result.parquet")

    for op, read in (
        (ext, (project(server), segment_name(SEGMENT))),
        (load, ("file", "/data/result.parquet")),
    ):
        lineage = op.get_openlineage_facets_on_complete(mock.MagicMock())
        assert (datasets(lineage.inputs), lineage.outputs) == ([read], [])
