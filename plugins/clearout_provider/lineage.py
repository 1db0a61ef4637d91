"""OpenLineage: what every dataset of the pipeline is called, in ONE place.

In Marquez or DataHub a nightly run reads as::

    CleverTap segment ─extract─▶ contacts file ─verify─▶ Clearout list (or Mail.so batches)
                                                      └▶ verdicts file ─load─▶ CleverTap profiles

Each operator's ``get_openlineage_facets_on_complete`` hands its facts to one function here
(:func:`extract_lineage`, :func:`verify_lineage`, :func:`load_lineage`). Names follow the OpenLineage
naming spec (namespace ``scheme://authority``, then a name) and stay the same from night to night, so a
dataset gathers its history instead of a new node per run:

========================  ===================================  ===========================================
dataset                   namespace                            name
========================  ===================================  ===========================================
a segment (a CQL query)   ``clevertap://<region>/<account>``   ``segments/<CQL digest>``; documentation:
                                                               the CQL, addresses masked
profiles a load wrote     ``clevertap://<region>/<account>``   ``profiles``; schema: the properties written
a Clearout bulk list      ``clearout://<API host>``            ``lists``; version: the list id
Clearout instant calls    ``clearout://<API host>``            ``instant``
Mail.so batches / calls   ``mailso://<API host>``              ``batches`` (version: the batch ids) /
                                                               ``validate``
a task file               ``file`` (``s3://<bucket>``, ...)    its path
========================  ===================================  ===========================================

The CleverTap account id names a project and is no secret (it travels in a plain header); the passcode
and the API tokens are never read here. Nothing is sent to a vendor, no dataset for it: a dry run has
none.

``clevertap://`` asset URIs: :func:`sanitize_uri` and :func:`convert_asset_to_openlineage` are registered
in ``get_provider_info()["asset-uris"]``. Two forms are accepted, ``clevertap://<region>/<account-id>/<name>``
(the namespace above, so ``.../profiles`` is the dataset the load writes) and
``clevertap://<connection-id>/<name>`` (what the shipped DAGs use, e.g. ``clevertap://clevertap_default/
verified``); a region name is never a connection id here.

This module imports only the standard library at the top: Airflow imports it to check every ``clevertap://``
asset of a DAG file while parsing. OpenLineage itself (the ``openlineage`` extra) is imported inside the
functions that build its objects, which run only when the OpenLineage listener asks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    from typing import TypeAlias

    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset
    from openlineage.client.event_v2 import Dataset, InputDataset, OutputDataset
    from openlineage.client.facet_v2 import DatasetFacet, RunFacet

    from clearout_provider.contacts import StoragePath

    #: What a ``get_openlineage_facets_on_complete`` returns.
    Lineage: TypeAlias = OperatorLineage[Dataset, RunFacet]

SCHEME = "clevertap"
PROFILES = "profiles"
SEGMENTS = "segments"
#: Hex digits of the CQL digest in a segment's name: unique enough within one project, short to read.
SEGMENT_DIGEST_LENGTH = 12


# ------------------------------------------------------------------------------------- asset URIs


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """The normal form of a ``clevertap://`` asset URI; ValueError for one that names no dataset.

    Airflow has already lowercased the scheme, dropped any password and fragment, and stripped trailing
    slashes. A region is lowercased (CleverTap's own spelling); account ids, connection ids and names
    keep their case. Credentials, a port or a query have no place in such a URI and are refused (a query
    is where a passcode would hide).
    """
    if uri.username is not None or uri.password is not None:
        raise ValueError("A clevertap:// URI must not carry credentials")
    if uri.query:
        raise ValueError("A clevertap:// URI takes no query")
    if not uri.netloc or ":" in uri.netloc:
        raise ValueError(
            "A clevertap:// URI starts with a region (clevertap://<region>/<account-id>/<name>) or a "
            "connection id (clevertap://<connection-id>/<name>), without a port"
        )
    path = uri.path.rstrip("/")
    segments = path[1:].split("/") if path else []
    if not segments or "" in segments:
        raise ValueError(f"A clevertap:// URI must name a dataset after its host: {uri.geturl()!r}")
    host = uri.netloc
    if _is_region(host):
        host = host.lower()
        if len(segments) < 2:
            raise ValueError(
                f"clevertap://{host}/... names a region: the form is clevertap://{host}/<account-id>/<name> "
                "(e.g. .../profiles)"
            )
    return uri._replace(netloc=host, path="/" + "/".join(segments))


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Dataset:
    """The OpenLineage dataset of a (sanitized) ``clevertap://`` asset: the namespace is the project
    (``clevertap://<region>/<account-id>``) or the connection id, the name the rest of the path."""
    from openlineage.client.event_v2 import Dataset

    namespace, name = uri_dataset(asset.uri)
    return Dataset(namespace=namespace, name=name)


def uri_dataset(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of a ``clevertap://`` URI (see :func:`convert_asset_to_openlineage`)."""
    parts = sanitize_uri(urlsplit(uri))
    segments = parts.path.lstrip("/").split("/")
    if _is_region(parts.netloc):
        return clevertap_namespace(parts.netloc, segments[0]), "/".join(segments[1:])
    return f"{SCHEME}://{parts.netloc}", "/".join(segments)


def clevertap_namespace(region: str, account_id: str) -> str:
    """The namespace of one CleverTap project: ``clevertap://eu1/948-4KK-444Z``."""
    return f"{SCHEME}://{region}/{account_id}"


def _is_region(host: str) -> bool:
    from clearout_provider.hooks.clevertap import REGION_HOSTS  # the hook module is not needed to parse

    return host.lower() in REGION_HOSTS


# ---------------------------------------------------------------------------------------- datasets


def project_namespace(clevertap_conn_id: str) -> str:
    """The namespace of the CleverTap project a connection points at (region and account id; the
    connection's host override, such as the sandbox, does not change which project it is)."""
    from clearout_provider.hooks.clevertap import CleverTapHook

    credentials = CleverTapHook(clevertap_conn_id).credentials
    return clevertap_namespace(credentials.region, credentials.account_id)


def segment_name(query: Mapping[str, Any]) -> str:
    """``segments/<digest>``: the same CQL (whatever its key order) is the same segment."""
    canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"{SEGMENTS}/{hashlib.sha256(canonical.encode()).hexdigest()[:SEGMENT_DIGEST_LENGTH]}"


def segment_dataset(clevertap_conn_id: str, query: Mapping[str, Any]) -> InputDataset:
    """The segment an extract read: named by its CQL, which it carries as documentation (masked)."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import documentation_dataset

    cql = json.dumps(_masked(query), sort_keys=True, ensure_ascii=False, default=str)
    return InputDataset(
        namespace=project_namespace(clevertap_conn_id),
        name=segment_name(query),
        facets={
            "documentation": documentation_dataset.DocumentationDatasetFacet(
                description=f"CleverTap segment (CQL): {cql}", contentType="text/plain"
            )
        },
    )


def profiles_dataset(
    clevertap_conn_id: str, properties: Mapping[str, str | None], rows: int
) -> OutputDataset:
    """The project's profiles, with the properties a load wrote (name → value type) and how many
    profiles it updated."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset, schema_dataset

    fields = [schema_dataset.SchemaDatasetFacetFields(name=p, type=t) for p, t in sorted(properties.items())]
    return OutputDataset(
        namespace=project_namespace(clevertap_conn_id),
        name=PROFILES,
        facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows
            )
        },
    )


def property_type(value: Any) -> str | None:
    """The type of a property value as the load sends it (a date is ``$D_<epoch>``); None for an
    operator such as ``{"$delete": 1}``, which clears the property."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "date" if value.startswith("$D_") else "string"
    if isinstance(value, list):
        return "array<string>"
    return None


def file_location(path: StoragePath) -> tuple[str, str]:
    """``(namespace, name)`` of a task file: ``("file", "/abs/path")`` for a local one (a plain path or
    ``file://``, as Airflow's common-io provider names file assets), ``("s3://bucket", "key")`` for any
    other fsspec URL. The extract's output and the verify's input are the same file written two ways."""
    text = str(path)
    parts = urlsplit(text)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # one letter: a Windows drive
        if parts.scheme == "file":
            return (f"file://{parts.hostname}" if parts.hostname else "file"), parts.path
        return "file", os.path.abspath(text)
    authority = parts.hostname or ""
    if parts.port:
        authority += f":{parts.port}"
    return f"{parts.scheme}://{authority}", parts.path.lstrip("/")


def file_dataset(path: StoragePath, *, rows: int | None = None) -> OutputDataset:
    """A task file as an output (with its row count when known). As an input: :func:`input_file`."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    namespace, name = file_location(path)
    stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)
    return OutputDataset(
        namespace=namespace, name=name, outputFacets={} if rows is None else {"outputStatistics": stats}
    )


def input_file(path: StoragePath) -> InputDataset:
    """A task file as an input."""
    from openlineage.client.event_v2 import InputDataset

    namespace, name = file_location(path)
    return InputDataset(namespace=namespace, name=name)


def verifier_dataset(verifier: str, conn_id: str, *, job_id: str | None, batched: bool) -> OutputDataset:
    """Where the addresses went: a Clearout bulk list (or instant calls), Mail.so batches (or validate
    calls), in the namespace of the vendor's API host; a job's id is the dataset's version."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset

    from clearout_provider.verification.verifier import spec

    who = spec(verifier)
    name = {
        ("clearout", True): "lists",
        ("clearout", False): "instant",
        ("mailso", True): "batches",
        ("mailso", False): "validate",
    }[who.name, batched]
    facets: dict[str, DatasetFacet] = {}
    if job_id:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=job_id)
    namespace = f"{who.name}://{_api_authority(who.name, conn_id)}"
    return OutputDataset(namespace=namespace, name=name, facets=facets)


def _api_authority(verifier: str, conn_id: str) -> str:
    """``host[:port]`` of a vendor connection's API base URL (never its user info)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if verifier == "mailso":
        from clearout_provider.hooks.mailso import normalise_base_url as mailso_url

        url = mailso_url(conn.host, conn.schema, conn.port)
    else:
        from clearout_provider.hooks.clearout import normalise_base_url as clearout_url

        url = clearout_url(conn.host)
    parts = urlsplit(url)
    return (parts.hostname or "") + (f":{parts.port}" if parts.port else "")


def _masked(value: Any) -> Any:
    """A CQL value with every email address in it masked (a segment may pick people by address)."""
    from clearout_provider.masking import mask_email

    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, str) and "@" in value:
        return mask_email(value)
    return value


# ------------------------------------------------------------------------------ per operator


def extract_lineage(
    clevertap_conn_id: str, query: Mapping[str, Any], result: Mapping[str, Any] | None
) -> Lineage:
    """The extract read the segment and wrote the contacts file (``result``: its return value; None
    when it did not finish, then only the segment)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    outputs: list[Dataset] = []
    if result is not None:
        outputs.append(file_dataset(result["path"], rows=result["to_verify"]))
    return OperatorLineage(inputs=[segment_dataset(clevertap_conn_id, query)], outputs=outputs)


def verify_lineage(
    verifier: str, conn_id: str, source: StoragePath, result: Mapping[str, Any] | None
) -> Lineage:
    """A verify read the contacts file, sent addresses to the vendor (when it sent any: not in a dry run,
    not when the ledger knew them all) and wrote the verdicts file. ``result``: the operator's return
    value (``list_id`` names a bulk job; ``mode`` "batch" / "instant" an instant operator's way)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    outputs: list[Dataset] = []
    if result is not None:
        job_id = result.get("list_id")
        if job_id or result.get("sent"):
            batched = bool(job_id) or result.get("mode") == "batch"
            outputs.append(verifier_dataset(verifier, conn_id, job_id=job_id, batched=batched))
        outputs.append(file_dataset(result["result_path"], rows=result["rows"]))
    return OperatorLineage(inputs=[input_file(source)], outputs=outputs)


def load_lineage(
    clevertap_conn_id: str,
    source: StoragePath,
    written: Mapping[str, str | None] | None,
    profiles: int = 0,
) -> Lineage:
    """A load read a result (or property) file and wrote ``written`` (property → type) onto
    ``profiles`` profiles; nothing written (a dry run, every row unchanged, or the load did not finish):
    no output."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    outputs: list[Dataset] = [profiles_dataset(clevertap_conn_id, written, profiles)] if written else []
    return OperatorLineage(inputs=[input_file(source)], outputs=outputs)
