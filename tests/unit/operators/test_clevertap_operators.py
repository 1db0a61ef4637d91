"""CleverTapExtractProfilesOperator and CleverTapLoadVerificationOperator with the hook mocked."""

from __future__ import annotations

from clearout_provider.operators.clevertap import CleverTapLoadVerificationOperator


def test_load_keeps_base_operator_dry_run_a_method_and_its_dry_run_keyword() -> None:
    """The setting lives in ``dry_run_enabled``: an attribute ``dry_run`` shadows BaseOperator.dry_run()."""
    load = CleverTapLoadVerificationOperator(
        task_id="load", result_path="result.parquet", dry_run="{{ params.dry_run }}"
    )
    assert load.dry_run_enabled == "{{ params.dry_run }}"
    assert "dry_run_enabled" in load.template_fields and "dry_run" not in load.template_fields
    assert callable(load.dry_run)
