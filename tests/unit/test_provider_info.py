"""Airflow must discover the provider, its hooks and connection forms through the entry point."""

from __future__ import annotations

import importlib

import pytest

from clearout_provider import get_provider_info


def test_every_listed_module_and_class_imports() -> None:
    info = get_provider_info()
    modules = [
        m
        for group in ("hooks", "operators", "sensors", "triggers")
        for e in info[group]
        for m in e["python-modules"]
    ]
    assert "clearout_provider.hooks.clearout" in modules
    for name in modules:
        importlib.import_module(name)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == conn["connection-type"]


def test_providers_manager_sees_clearout_hook_and_form() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-clearout" in pm.providers
    hook_info = pm.hooks.get("clearout")
    assert hook_info is not None, "connection type 'clearout' is not registered"
    assert hook_info.hook_class_name == "clearout_provider.hooks.clearout.ClearoutHook"
    assert "extra__clearout__timeout" in pm.connection_form_widgets
    behaviour = pm.field_behaviours["clearout"]
    assert behaviour["relabeling"]["password"] == "API token"


def test_providers_manager_sees_mailso_hook_and_form() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    hook_info = pm.hooks.get("mailso")
    assert hook_info is not None, "connection type 'mailso' is not registered"
    assert hook_info.hook_class_name == "clearout_provider.hooks.mailso.MailsoHook"
    for extra in ("timeout", "rpm", "batch_size"):
        assert f"extra__mailso__{extra}" in pm.connection_form_widgets
    assert pm.field_behaviours["mailso"]["relabeling"]["password"] == "API key"


@pytest.mark.parametrize("conn_type", ["clearout", "mailso"])
def test_default_connection_names(conn_type: str) -> None:
    info = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    module, _, cls = info[conn_type]["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), cls)
    assert hook.default_conn_name == f"{conn_type}_default"
