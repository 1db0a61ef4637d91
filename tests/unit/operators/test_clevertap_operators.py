"""The CleverTap extract and load operators (verdicts, property columns) with CleverTapHook mocked."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from operator_fakes import task_context

from clearout_provider.clearout.results import normalise_instant_result
from clearout_provider.hooks.clevertap_models import ExportResult, RecordRejection, UploadReport
from clearout_provider.operators.clevertap import (
    FRESHNESS_REASON,
    CleverTapExtractProfilesOperator,
    CleverTapLoadPropertiesOperator,
    CleverTapLoadVerificationOperator,
)
from clearout_provider.results import RESULT_SCHEMA, DecidedBy
from clearout_provider.sandbox.clearout_verdicts import verdict_for
from clearout_provider.verdicts import (
    UNSUBSCRIBE_PROPERTY,
    UNSUBSCRIBED_REASON_PROPERTY,
)

STATUS = "Clearout Verification Status"
VERIFIED_AT = "Clearout Verified At"


@pytest.fixture
def hook() -> Iterator[mock.MagicMock]:
    """The CleverTapHook the operators build (imported when they run, so patched where it lives)."""
    with mock.patch("clearout_provider.hooks.clevertap.CleverTapHook", autospec=True) as cls:
        instance = cls.return_value
        instance.sent: list[dict[str, Any]] = []

        def upload(records: Iterable[dict[str, Any]], *, dry_run: bool = False, **kw: Any) -> UploadReport:
            batch = list(records)
            instance.sent.extend(batch)
            return UploadReport(dry_run=dry_run, received=len(batch), sent=len(batch), processed=len(batch))

        def subscribe(emails: Iterable[str], status: str = "Unsubscribe", **kw: Any) -> UploadReport:
            emails = list(emails)
            return UploadReport(received=len(emails), sent=len(emails), processed=len(emails))

        instance.upload_profiles.side_effect = upload
        instance.subscribe.side_effect = subscribe
        yield instance


# ------------------------------------------------------------------------------------------- extract


def exported(path: Path, rows: list[dict[str, Any]], parts: int = 1) -> ExportResult:
    """What export_partitions writes: identity, objectId, email, name and the properties asked for
    (every row from the first of ``parts`` queries)."""
    names = ("identity", "objectId", "email", "name", STATUS, VERIFIED_AT, "Clearout Verified Email")
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    pq.write_table(table, path)
    return ExportResult(
        str(path), len(rows), parts, parts + 1, names, part_counts=(len(rows),) + (0,) * (parts - 1)
    )


def test_extract_keeps_only_the_profiles_due_and_accounts_for_every_exported_one(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    recently = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    profiles = [
        {"identity": "1", "email": "new@example.com"},  # never verified
        {"identity": "2", "email": "kept@example.com", STATUS: "valid", VERIFIED_AT: recently,
         "Clearout Verified Email": "kept@example.com"},  # verified 2 days ago: fresh
        {"identity": "3", "email": "moved@example.com", STATUS: "valid", VERIFIED_AT: recently,
         "Clearout Verified Email": "old@example.com"},  # the address changed since
        {"identity": "4", "email": None},  # no email
    ]  # fmt: skip
    hook.export_partitions.side_effect = lambda queries, dest, **kw: exported(Path(dest), profiles)
    extract = CleverTapExtractProfilesOperator(
        task_id="extract",
        query='{"event_name": "App Launched", "from": 20260101, "to": 20260102}',
        workdir=str(tmp_path),
        batch_size=500,
    )

    summary = extract.execute(task_context("extract"))

    # No full sweep has succeeded yet: the first night exports the whole segment, as one cursor.
    queries = hook.export_partitions.call_args.args[0]
    assert queries == [{"event_name": "App Launched", "from": 20260101, "to": 20260102}]
    assert hook.export_partitions.call_args.kwargs["batch_size"] == 500
    assert summary["selection"] == "full"
    assert (summary["exported"], summary["no_email"], summary["fresh"], summary["to_verify"]) == (4, 1, 1, 2)
    assert summary["by_reason"]["never_verified"] == summary["by_reason"]["email_changed"] == 1
    kept = pq.read_table(summary["path"].removeprefix("file://")).to_pylist()
    assert [(r["identity"], r[FRESHNESS_REASON]) for r in kept] == [
        ("1", "never_verified"),
        ("3", "email_changed"),
    ]


def test_extract_as_csv_is_for_people_formula_cells_neutralised(hook: mock.MagicMock, tmp_path: Path) -> None:
    profiles = [{"identity": "1", "email": "new@example.com", "name": "=HYPERLINK(1)"}]
    hook.export_partitions.side_effect = lambda queries, dest, **kw: exported(Path(dest), profiles)
    extract = CleverTapExtractProfilesOperator(
        task_id="extract", query="{}", workdir=str(tmp_path), output_format="csv"
    )

    summary = extract.execute(task_context("extract"))

    text = Path(summary["path"].removeprefix("file://")).read_text()
    assert "'=HYPERLINK(1)" in text and summary["to_verify"] == 1


def test_extract_refuses_a_query_that_is_not_a_cql_object(hook: mock.MagicMock, tmp_path: Path) -> None:
    extract = CleverTapExtractProfilesOperator(task_id="extract", query="[1, 2]", workdir=str(tmp_path))
    with pytest.raises(TypeError, match="CQL JSON object"):
        extract.execute(task_context("extract"))
    hook.export_partitions.assert_not_called()


def test_extract_after_a_recorded_sweep_asks_only_for_the_delta(hook: mock.MagicMock, tmp_path: Path) -> None:
    """Once a run recorded its full sweep, the next night's queries carry the delta conditions on the
    properties the load writes, split by the partition property; the sweep comes back after its days."""
    from clearout_provider.report import record_selections

    hook.export_partitions.side_effect = lambda queries, dest, **kw: exported(Path(dest), [], len(queries))
    extract = CleverTapExtractProfilesOperator(
        task_id="extract",
        query="{}",
        workdir=str(tmp_path),
        full_sweep_days=7,
        partition_by={"property": "Signup Date", "since": "2024-01-01", "parts": 2},
    )
    first = extract.execute(task_context("extract"))
    assert first["selection"] == "full" and len(hook.export_partitions.call_args.args[0]) == 3
    record_selections(first)  # what the run's last step does once the run succeeded

    second = extract.execute(task_context("extract"))

    queries = hook.export_partitions.call_args.args[0]
    assert second["selection"] == "delta" and list(second["by_part"])[0] == "never_verified/no Signup Date"
    conditions = [q["common_profile_properties"]["profile_fields"] for q in queries]
    assert len(queries) == 2 * 3  # never verified, due; each without a sign-up date + 2 ranges
    assert conditions[0][0] == {"name": VERIFIED_AT, "operator": "does_not_exist"}
    due = conditions[-1][0]
    assert due["name"] == "Clearout Reverify After" and due["operator"] == "less_than"
    assert abs(int(due["value"].removeprefix("$D_")) - time.time()) < 600  # due by now
    # A run that failed after its sweep recorded nothing: asking again still sweeps (days counted from
    # the last SUCCESSFUL sweep); so does selection="full" whatever the history says.
    full = CleverTapExtractProfilesOperator(
        task_id="extract", query="{}", workdir=str(tmp_path), selection="full"
    )
    assert full.execute(task_context("extract"))["selection"] == "full"


# ---------------------------------------------------------------------------------------------- load


def result_file(path: Path) -> str:
    """A verify result: a valid address, a hard bounce (unsubscribed by default), and one with no verdict."""
    verified_on = datetime(2026, 3, 1, tzinfo=UTC)
    rows = []
    for identity, email in (("1", "valid@example.com"), ("2", "mailbox_not_found@example.com")):
        verdict = normalise_instant_result(verdict_for(email).as_instant(verified_on))
        rows.append({"identity": identity, "objectId": None, "email": email, **verdict})
    no_answer = dict.fromkeys(RESULT_SCHEMA.names)
    no_answer |= {"decided_by": DecidedBy.CLEAROUT_INSTANT_FAILED.value, "verdict_reason": "timed out"}
    rows.append({"identity": "3", "objectId": None, "email": "slow@example.com", **no_answer})
    schema = pa.schema(
        [("identity", pa.string()), ("objectId", pa.string()), ("email", pa.string()), *RESULT_SCHEMA]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return str(path)


def load(tmp_path: Path, **kwargs: Any) -> CleverTapLoadVerificationOperator:
    return CleverTapLoadVerificationOperator(
        task_id="load", result_path=result_file(tmp_path / "result.parquet"), workdir=str(tmp_path), **kwargs
    )


def test_load_writes_each_verdict_and_unsubscribes_the_hard_bounce(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    summary = load(tmp_path).execute(task_context("load"))

    assert [r["identity"] for r in hook.sent] == ["1", "2"]  # nothing for the row without a verdict
    valid, bounced = (r["profileData"] for r in hook.sent)
    assert valid[STATUS] == "valid" and UNSUBSCRIBE_PROPERTY not in valid
    assert bounced[STATUS] == "invalid"
    assert bounced[UNSUBSCRIBE_PROPERTY] is False  # unsubscribed on the profile...
    assert bounced[UNSUBSCRIBED_REASON_PROPERTY] == "hard_bounce:406"  # ...with our marker
    hook.subscribe.assert_called_once()
    assert hook.subscribe.call_args.args == (["mailbox_not_found@example.com"], "Unsubscribe")
    assert hook.upload_profiles.call_args.kwargs["dry_run"] is False
    counts = ("input", "updated", "not_verified", "rejected", "unsubscribed")
    assert {k: summary[k] for k in counts} == {
        "input": 3, "updated": 2, "not_verified": 1, "rejected": 0, "unsubscribed": 1,
    }  # fmt: skip
    assert summary["dry_run"] is False
    outcomes = pq.read_table(summary["outcome_path"].removeprefix("file://")).to_pylist()
    assert [o["outcome"] for o in outcomes] == ["updated", "updated", "not_verified"]


def test_load_dry_run_validates_the_updates_and_sends_no_unsubscribe(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    summary = load(tmp_path, dry_run="true").execute(task_context("load"))  # as a template renders it

    assert hook.upload_profiles.call_args.kwargs["dry_run"] is True
    hook.subscribe.assert_not_called()
    assert summary["dry_run"] is True and summary["unsubscribed"] == 1  # would be


def test_a_rejected_profile_update_is_counted_and_its_address_is_not_unsubscribed(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    def upload(records: Iterable[dict[str, Any]], *, dry_run: bool = False, **kw: Any) -> UploadReport:
        batch = list(records)
        rejection = RecordRejection(row=1, code=515, error="Invalid email", stage="api", identity="2")
        return UploadReport(
            received=len(batch), sent=len(batch), processed=len(batch) - 1, rejections=[rejection]
        )

    hook.upload_profiles.side_effect = upload
    summary = load(tmp_path).execute(task_context("load"))

    hook.subscribe.assert_not_called()
    assert (summary["updated"], summary["rejected"], summary["unsubscribed"]) == (1, 1, 0)
    assert summary["by_rejection_code"] == {"515": 1}


def test_load_keeps_base_operator_dry_run_a_method_and_its_dry_run_keyword() -> None:
    """The setting lives in ``dry_run_enabled``: an attribute ``dry_run`` shadows BaseOperator.dry_run()."""
    load = CleverTapLoadVerificationOperator(
        task_id="load", result_path="result.parquet", dry_run="{{ params.dry_run }}"
    )
    assert load.dry_run_enabled == "{{ params.dry_run }}"
    assert "dry_run_enabled" in load.template_fields and "dry_run" not in load.template_fields
    assert callable(load.dry_run)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unsubscribe": {"method": "email"}}, "Unknown unsubscribe method"),
        ({"mapping": {"columns": ["no_such_column"]}}, "no_such_column"),
        ({"dry_run": "perhaps"}, "dry_run must be true or false"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_load_settings_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CleverTapLoadVerificationOperator(task_id="load", result_path="r.parquet", **kwargs)


# ------------------------------------------------------------------------------------ property load


def property_file(path: Path) -> str:
    """Finder-like rows: one answered with an exported value to compare, one new, one without an answer."""
    table = pa.table(
        {
            "identity": ["1", "2", "3"],
            "objectId": [None, None, None],
            "decided_by": ["clearout_bulk_finder", "clearout_bulk_finder", "clearout_failed"],
            "finder_status": ["found", "not_found", "not_found"],
            "finder_confidence_score": pa.array([90, None, None], pa.int32()),
            "found_at": pa.array([datetime(2026, 3, 1, tzinfo=UTC), None, None], pa.timestamp("ms", "UTC")),
            "Finder Status": ["found", None, None],  # what the export read back
        }
    )
    pq.write_table(table, path)
    return str(path)


def property_load(tmp_path: Path, **kwargs: Any) -> CleverTapLoadPropertiesOperator:
    properties = {"finder_status": "Finder Status", "finder_confidence_score": "Score", "found_at": "At"}
    return CleverTapLoadPropertiesOperator(
        task_id="write_back",
        source=property_file(tmp_path / "leads.parquet"),
        properties=properties,
        workdir=str(tmp_path),
        **kwargs,
    )


def test_property_load_sends_only_what_differs_and_nothing_for_rows_without_an_answer(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    summary = property_load(tmp_path).execute(task_context("write_back"))

    assert [(r["identity"], r["profileData"]) for r in hook.sent] == [
        ("1", {"Score": 90, "At": "$D_1772323200"}),  # the status is already "found"
        ("2", {"Finder Status": "not_found"}),  # missing values leave the properties alone
    ]
    counts = ("input", "updated", "unchanged", "not_verified", "rejected", "unsubscribed")
    assert {k: summary[k] for k in counts} == {
        "input": 3, "updated": 2, "unchanged": 0, "not_verified": 1, "rejected": 0, "unsubscribed": 0,
    }  # fmt: skip
    assert summary["by_no_verdict"] == {"clearout_failed": 1}
    hook.subscribe.assert_not_called()
    outcomes = pq.read_table(summary["outcome_path"].removeprefix("file://")).to_pylist()
    assert [o["outcome"] for o in outcomes] == ["updated", "updated", "not_verified"]


def test_property_load_counts_clevertap_rejections_and_validates_in_a_dry_run(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    def upload(records: Iterable[dict[str, Any]], *, dry_run: bool = False, **kw: Any) -> UploadReport:
        batch = list(records)
        rejection = RecordRejection(row=0, code=515, error="Invalid value", stage="api", identity="1")
        return UploadReport(
            dry_run=dry_run, received=len(batch), sent=len(batch), processed=len(batch) - 1,
            rejections=[rejection],
        )  # fmt: skip

    hook.upload_profiles.side_effect = upload
    summary = property_load(tmp_path, dry_run=True).execute(task_context("write_back"))

    assert hook.upload_profiles.call_args.kwargs["dry_run"] is True
    assert (summary["updated"], summary["rejected"], summary["by_rejection_code"]) == (1, 1, {"515": 1})
    assert summary["dry_run"] is True


@pytest.mark.parametrize(
    ("properties", "message"),
    [({"a": "bad.key"}, "forbidden character"), ([], "no column"), ({"a": ""}, "non-empty")],
)
def test_property_load_refuses_a_property_name_clevertap_refuses_when_the_dag_is_parsed(
    properties: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CleverTapLoadPropertiesOperator(task_id="write_back", source="p.parquet", properties=properties)
