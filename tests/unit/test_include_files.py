"""``include/``: the data files the shipped DAGs read (property renames, segment examples, report
templates), each optional, found through ``[clearout] include_folder`` or beside the DAGs folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clearout_provider.clevertap.mapping import PROPERTY_NAMES_FILE, PropertyMapping, deployment_renames
from clearout_provider.dag_params import segment_examples, segment_param
from clearout_provider.include_files import include_file, include_folder
from clearout_provider.report import PAGE_TEMPLATE, STYLESHEET, report_template
from clearout_provider.sandbox.clevertap_cql import compile_query

REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"


@pytest.fixture
def include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty include folder of the test's own, configured as ``[clearout] include_folder``."""
    folder = tmp_path / "include"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW__CLEAROUT__INCLUDE_FOLDER", str(folder))
    return folder


def test_without_the_setting_the_include_folder_is_the_one_beside_the_dags_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__CLEAROUT__INCLUDE_FOLDER", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "airflow" / "dags"))
    assert include_folder() == (tmp_path / "airflow" / "include").resolve()
    assert include_file("anything.json") is None  # a missing file means the packaged default


def test_deployment_renames_apply_to_every_mapping_and_a_runs_own_rename_wins(include: Path) -> None:
    assert PropertyMapping.from_params().property_names()["safe_to_send"] == "Clearout Safe To Send"
    (include / PROPERTY_NAMES_FILE).write_text(
        json.dumps({"clearout": {"Clearout Safe To Send": "Email Safe", "clearout_status": "Email Status"}})
    )

    assert deployment_renames("clearout") == {"safe_to_send": "Email Safe", "clearout_status": "Email Status"}
    assert deployment_renames("mailso") == {}
    names = PropertyMapping.from_params(["Clearout Safe To Send", "clearout_status"]).property_names()
    assert names["safe_to_send"] == "Email Safe" and names["clearout_status"] == "Email Status"
    run = PropertyMapping.from_params(renames={"safe_to_send": "Run Safe"}).property_names()
    assert run["safe_to_send"] == "Run Safe" and run["clearout_status"] == "Email Status"
    mailso = PropertyMapping.from_params(verifier="mailso").property_names()
    assert mailso["safe_to_send"] == "Mailso Safe To Send"  # each verifier's renames are its own


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"hubspot": {}}', "keyed by verifier"),
        ('{"clearout": ["x"]}', "must map columns"),
        ('{"clearout": {"No Such Property": "x"}}', "Unknown CleverTap mapping column"),
        ('{"clearout": {"safe_to_send": "Bad.Name"}}', "Cannot write CleverTap property"),
    ],
)
def test_a_broken_renames_file_fails_naming_the_file(include: Path, content: str, problem: str) -> None:
    (include / PROPERTY_NAMES_FILE).write_text(content)
    with pytest.raises(ValueError, match=problem) as caught:
        PropertyMapping.from_params()
    if "Cannot write" not in problem:  # the key check names the property; the rest name the file
        assert str(include / PROPERTY_NAMES_FILE) in str(caught.value)


def test_the_shipped_renames_file_renames_nothing() -> None:
    shipped = json.loads((REPO_INCLUDE / PROPERTY_NAMES_FILE).read_text())
    assert shipped == {"clearout": {}, "mailso": {}}  # an example to fill in, no surprise for the tests


def test_report_templates_are_packaged_and_an_include_file_overrides_one(include: Path) -> None:
    packaged_page, packaged_style = report_template(PAGE_TEMPLATE), report_template(STYLESHEET)
    assert "${content}" in packaged_page and "${style}" in packaged_page and "body{" in packaged_style

    (include / "report").mkdir()
    (include / "report" / STYLESHEET).write_text("body{background:#000}")

    assert report_template(STYLESHEET) == "body{background:#000}"
    assert report_template(PAGE_TEMPLATE) == packaged_page  # the other one stays packaged


def test_segment_examples_come_from_the_include_folder_into_the_param_form(include: Path) -> None:
    assert segment_examples() == {}
    plain = segment_param({}, title="Segment", description_md="Which profiles.")
    assert plain.schema["description_md"] == "Which profiles." and "examples" not in plain.schema

    (include / "segments").mkdir()
    query = {"common_profile_properties": {"profile_fields": [{"name": "City", "operator": "exists"}]}}
    (include / "segments" / "with_a_city.json").write_text(json.dumps(query))
    (include / "segments" / "broken.json").write_text("{oops")  # left out, never breaks the DAGs

    assert segment_examples() == {"with_a_city": query}
    param = segment_param({}, title="Segment", description_md="Which profiles.")
    assert "**with a city**" in param.schema["description_md"]
    assert json.dumps(query, separators=(",", ":")) in param.schema["description_md"]
    assert param.schema["examples"] == [query]
    param.resolve(query)  # an example is a valid value of the param


def test_every_shipped_segment_example_is_cql_the_sandbox_accepts() -> None:
    examples = sorted((REPO_INCLUDE / "segments").glob("*.json"))
    assert examples
    for path in examples:
        compile_query(json.loads(path.read_text()), datetime.now(UTC).date())  # raises CqlError if not
