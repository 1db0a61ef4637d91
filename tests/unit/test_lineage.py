"""clearout_provider.lineage without a server: ``clevertap://`` assets as Airflow itself checks and converts
them (the provider's registered ``asset-uris``), and the dataset names the operators emit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
from airflow.sdk import Asset

from clearout_provider import get_provider_info
from clearout_provider.lineage import (
    PROFILES,
    clevertap_namespace,
    file_location,
    load_lineage,
    property_type,
    segment_dataset,
    segment_name,
)

CLEVERTAP = json.dumps(
    {
        "conn_type": "clevertap",
        "login": "948-4KK-444Z",
        "password": "the-passcode",
        "extra": {"region": "IN1"},
    }
)


@pytest.fixture
def clevertap_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_CT_LINEAGE", CLEVERTAP)
    return "ct_lineage"


# -------------------------------------------------------------------------------------- asset URIs


def test_the_provider_registers_the_clevertap_scheme_with_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    [entry] = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["clevertap"]
    manager = ProvidersManager()
    manager.initialize_providers_asset_uri_resources()
    assert manager.asset_uri_handlers["clevertap"].__module__ == "clearout_provider.lineage"
    assert "clevertap" in manager.asset_to_openlineage_converters


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        # the shipped DAGs' form: a connection id, then a name
        ("clevertap://clevertap_default/verified", "clevertap://clevertap_default/verified"),
        # a project: region (lowercased), account id (kept as written), name; trailing slashes go
        ("clevertap://EU1/948-4KK-444Z/profiles/", "clevertap://eu1/948-4KK-444Z/profiles"),
        (
            "CLEVERTAP://in1/948-4KK-444Z/segments/0123456789ab",
            "clevertap://in1/948-4KK-444Z/segments/0123456789ab",
        ),
    ],
)
def test_asset_uris_of_either_form_validate_and_normalise(uri: str, normal: str) -> None:
    assert Asset(uri).uri == normal


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("clevertap://eu1/profiles", "names a region"),  # a region needs an account id, then a name
        ("clevertap://eu1", "must name a dataset"),
        ("clevertap://clevertap_default", "must name a dataset"),
        ("clevertap://clevertap_default//verified", "must name a dataset"),
        ("clevertap://eu1/948-4KK-444Z/profiles?passcode=x", "takes no query"),
        ("clevertap://someone@eu1/948-4KK-444Z/profiles", "must not carry credentials"),
        ("clevertap://eu1:443/948-4KK-444Z/profiles", "without a port"),
    ],
)
def test_asset_uris_that_name_no_dataset_or_carry_secrets_are_refused(uri: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Asset(uri)


def test_a_project_asset_converts_to_the_dataset_the_load_emits(clevertap_conn: str) -> None:
    dataset = translate_airflow_asset(Asset("clevertap://in1/948-4KK-444Z/profiles"), None)
    emitted = load_lineage(
        clevertap_conn, "/data/result.parquet", {"Clearout Verification Status": "string"}, 1
    )

    assert dataset is not None
    assert (dataset.namespace, dataset.name) == (emitted.outputs[0].namespace, emitted.outputs[0].name)
    assert (dataset.namespace, dataset.name) == ("clevertap://in1/948-4KK-444Z", PROFILES)


def test_a_connection_asset_converts_to_a_dataset_of_that_connection() -> None:
    dataset = translate_airflow_asset(Asset("clevertap://clevertap_default/verified"), None)
    assert dataset is not None
    assert (dataset.namespace, dataset.name) == ("clevertap://clevertap_default", "verified")


def test_parsing_a_dag_never_imports_openlineage() -> None:
    """The operators and a clevertap:// asset need no OpenLineage (the optional extra): DAG files parse
    and run without it, the listener alone calls into it."""
    script = """
import sys
from airflow.sdk import Asset
import clearout_provider.operators.clevertap, clearout_provider.operators.bulk_verify
import clearout_provider.operators.instant_verify
Asset("clevertap://eu1/948-4KK-444Z/profiles")
print(sorted(m for m in sys.modules if m.startswith(("openlineage", "airflow.providers.openlineage"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = done.stdout.strip().splitlines()[-1]
    assert "openlineage.client" not in loaded and "openlineage.extractors" not in loaded, loaded


# ---------------------------------------------------------------------------------------- datasets


def test_a_segment_is_named_by_its_query_whatever_the_key_order() -> None:
    query = {"event_name": "App Launched", "from": 20260101, "to": 20260131}
    same = {"to": 20260131, "from": 20260101, "event_name": "App Launched"}
    other = {"event_name": "App Launched", "from": 20260101, "to": 20260201}

    assert segment_name(query) == segment_name(same) != segment_name(other)
    assert segment_name(query).startswith("segments/")


def test_a_segment_documents_its_query_with_addresses_masked(clevertap_conn: str) -> None:
    query = {"common_profile_properties": {"profile_fields": [
        {"name": "Email", "operator": "equals", "value": "jane.doe@example.com"}]}}  # fmt: skip

    dataset = segment_dataset(clevertap_conn, query)

    assert dataset.namespace == clevertap_namespace("in1", "948-4KK-444Z")
    described = dataset.facets["documentation"].description
    assert '"equals"' in described and "j***@example.com" in described
    assert "jane.doe" not in described and "the-passcode" not in json.dumps(str(dataset))


@pytest.mark.parametrize(
    ("path", "location"),
    [
        (
            "/data/run/extract/clevertap-profiles.parquet",
            ("file", "/data/run/extract/clevertap-profiles.parquet"),
        ),
        ("file:///data/run/x.parquet", ("file", "/data/run/x.parquet")),
        ("s3://bucket/runs/x.parquet", ("s3://bucket", "runs/x.parquet")),
        ("s3://key:secret@bucket/runs/x.parquet", ("s3://bucket", "runs/x.parquet")),  # never user info
    ],
)
def test_task_files_are_named_as_airflow_names_file_and_object_store_assets(
    path: str, location: tuple[str, str]
) -> None:
    assert file_location(path) == location


def test_a_relative_path_and_its_file_url_are_one_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert file_location("out.parquet") == file_location(f"file://{tmp_path}/out.parquet")


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "boolean"), (0.93, "number"), ("valid", "string"), ("$D_1767225600", "date"),
     (["a", "b"], "array<string>"), ({"$delete": 1}, None)],
)  # fmt: skip
def test_property_types_as_the_load_sends_them(value: object, kind: str | None) -> None:
    assert property_type(value) == kind
