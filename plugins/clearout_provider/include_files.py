"""Where the deployment's ``include/`` folder is: the data files the shipped DAGs read, beside the DAGs.

``include/`` (the folder next to ``dags/`` in this repository, ``/opt/airflow/include`` in the
docker-compose stack) holds what a deployment tunes without touching code: CleverTap property renames
(``clevertap_property_names.json``, applied by :mod:`clearout_provider.clevertap.mapping`), CQL segment
examples (``segments/*.json``, offered by the DAG params) and report template overrides (``report/``,
read by :mod:`clearout_provider.report`). Every file is optional: the package carries its own defaults
and works installed without this repository.

The folder is ``[clearout] include_folder`` when set, else ``include`` beside the configured DAGs folder.
This module is the one place that decides it; it imports nothing heavy (the DAG processor calls it).
"""

from __future__ import annotations

from pathlib import Path


def include_folder() -> Path:
    """``[clearout] include_folder``, or ``<[core] dags_folder>/../include`` (it may not exist)."""
    from airflow.sdk.configuration import conf

    configured = conf.get("clearout", "include_folder", fallback="").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(conf.get("core", "dags_folder")).expanduser().resolve().parent / "include"


def include_file(*parts: str) -> Path | None:
    """The file ``include/<parts...>`` when the deployment has it, else None (use the packaged default)."""
    path = include_folder().joinpath(*parts)
    return path if path.is_file() else None
