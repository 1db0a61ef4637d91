"""The main job in one command: the nightly list-cleaning DAG end to end against the bundled sandbox.

``python -m clearout_provider.demo`` (what ``make demo`` runs) starts the sandbox with ~50,000 seeded
CleverTap contacts, migrates a SQLite Airflow home under ``.demo/`` in the current folder, runs
``airflow dags test clevertap_nightly_list_cleaning`` with both connections pointing at the sandbox,
prints the run's report and stops the sandbox. No account, no credentials, no network.

``--dag finder`` (``make demo-finder``) runs ``clearout_email_finder_enrichment`` instead: the seed's
B2B leads (a name and a company domain, no email; about 1 in 100 profiles) are looked up with the
sandbox's Email Finder, which finds an address for about three in four of them (the same ones every
time), the found addresses are verified, and the answers written back to the leads. It prints what was
found, with the addresses masked.

Why a subprocess for ``airflow dags test`` rather than ``dag.test()`` in this process: the Airflow
configuration (home, DAGs folder, connections) is read when airflow is first imported, so the demo
sets the environment first and lets the real CLI, exactly as a user would type it, do the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clearout_provider.sandbox import SandboxProcess, SandboxSettings

#: ``--dag`` choices → the shipped DAG each one runs.
DAGS = {"nightly": "clevertap_nightly_list_cleaning", "finder": "clearout_email_finder_enrichment"}
DAG_ID = DAGS["nightly"]
DEFAULT_CONTACTS = 50_000


def repo_dags() -> Path:
    """The example DAGs shipped next to the package in a source checkout (``<repo>/dags``)."""
    return Path(__file__).resolve().parents[2] / "dags"


def run_airflow(*args: str, env: dict[str, str], log: Path) -> None:
    """Run an ``airflow`` CLI command, its output appended to ``log``; on failure show the tail and exit."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([airflow, *args], env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-60:]
        sys.exit(
            f"`airflow {' '.join(args)}` failed (exit {done.returncode}); last lines of {log}:\n"
            + "\n".join(tail)
        )


def sandbox_connections(server: SandboxProcess) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables pointing ``clearout_default``, ``clevertap_default`` and
    ``mailso_default`` at ``server``."""
    settings = server.settings
    clearout = {"conn_type": "clearout", "host": server.clearout_url, "password": settings.clearout_token}
    clevertap = {
        "conn_type": "clevertap",
        "login": settings.clevertap_account_id,
        "password": settings.clevertap_passcode,
        "host": f"{server.url}/clevertap",
    }
    mailso = {"conn_type": "mailso", "host": server.mailso_url, "password": settings.mailso_api_key}
    return {
        "AIRFLOW_CONN_CLEAROUT_DEFAULT": json.dumps(clearout),
        "AIRFLOW_CONN_CLEVERTAP_DEFAULT": json.dumps(clevertap),
        "AIRFLOW_CONN_MAILSO_DEFAULT": json.dumps(mailso),
    }


def airflow_environment(root: Path, dags: Path, server: SandboxProcess) -> dict[str, str]:
    """Airflow's configuration for the demo: a home under ``root``, the repo's DAGs, sandbox connections.

    Inherited ``AIRFLOW*`` variables are dropped: the demo always talks to its own sandbox and home,
    whatever Airflow (or connection) the calling shell is configured for.
    """
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # The sandbox finishes a list in seconds: poll it every 2 s, not every 30 s as for the real service.
        "AIRFLOW__CLEAROUT__BULK_POLL_INTERVAL": "2",
        **sandbox_connections(server),
        "CLEAROUT_PROVIDER_DATA_DIR": str(root / "data"),
    }


def _latest(data_dir: Path, dag_id: str, pattern: str) -> Path:
    """The newest run file of ``dag_id`` matching ``<run>/<pattern>``; exits when the run wrote none."""
    found = sorted((data_dir / dag_id).glob(f"*/{pattern}"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"the DAG run finished but wrote no {pattern} under {data_dir / dag_id}")
    return found[-1]


def print_nightly(data_dir: Path) -> None:
    """The nightly run's report, then its summary lines."""
    report = _latest(data_dir, DAGS["nightly"], "report/report.md")
    print()
    print(report.read_text())
    print((report.parent / "summary.txt").read_text())


def finder_summary(data_dir: Path, examples: int = 8) -> str:
    """What the finder run wrote to the leads: counts, then a few leads (their addresses masked)."""
    import pyarrow.parquet as pq

    from clearout_provider.masking import mask_email

    path = _latest(data_dir, DAGS["finder"], "lead_properties/lead-properties.parquet")
    rows = pq.read_table(path).to_pylist()
    found = [r for r in rows if r.get("Clearout Finder Status") == "found"]
    verified = [r for r in found if r.get("Clearout Verification Status")]
    by_status: dict[str, int] = {}
    for r in verified:
        by_status[r["Clearout Verification Status"]] = by_status.get(r["Clearout Verification Status"], 0) + 1
    lines = [
        f"Email Finder enrichment: {len(rows):,} leads looked up, {len(found):,} found, "
        f"{len(rows) - len(found):,} not found; {len(verified):,} found addresses verified "
        f"({', '.join(f'{k} {n:,}' for k, n in sorted(by_status.items())) or 'none'}); "
        f"{sum(1 for r in rows if r.get('Email')):,} made the profile's Email.",
        "",
        f"{'identity':<12} {'finder':<10} {'address':<34} {'confidence':>10}  verification",
    ]
    for r in rows[:examples]:
        who = r.get("identity") or r.get("objectId") or ""
        address = r.get("Clearout Finder Email Address")
        shown = mask_email(address) if address else "-"
        confidence = r.get("Clearout Finder Confidence Score") or "-"
        status = r.get("Clearout Finder Status") or ""
        verdict = r.get("Clearout Verification Status") or "-"
        lines.append(f"{who:<12} {status:<10} {shown:<34} {confidence:>10}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m clearout_provider.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--dag",
        choices=sorted(DAGS),
        default="nightly",
        help="nightly: list cleaning, printing its report (default); finder: Email Finder enrichment",
    )
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS, help="CleverTap profiles to seed")
    parser.add_argument(
        "--root", type=Path, default=Path(".demo"), help="folder for the Airflow home and run files"
    )
    parser.add_argument("--dags-folder", type=Path, default=repo_dags())
    parser.add_argument("--keep", action="store_true", help="keep the previous demo's Airflow home and files")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    if root.exists() and not args.keep:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "airflow.log"
    settings = SandboxSettings(
        seed_contacts=args.contacts,
        bulk_rate=50_000,
        credits=10 * args.contacts,
        state_dir=str(root / "sandbox"),
    )
    started = time.monotonic()
    print(f"Starting the sandbox with {args.contacts:,} CleverTap contacts ...", flush=True)
    with SandboxProcess(settings, log_path=root / "sandbox.log") as server:
        env = airflow_environment(root, args.dags_folder.resolve(), server)
        print(f"Sandbox at {server.url}; Airflow home {env['AIRFLOW_HOME']} (log: {log})", flush=True)
        run_airflow("db", "migrate", env=env, log=log)
        dag_id = DAGS[args.dag]
        print(f"Running `airflow dags test {dag_id}` ...", flush=True)
        run_airflow("dags", "test", dag_id, env=env, log=log)
    data_dir = Path(env["CLEAROUT_PROVIDER_DATA_DIR"])
    if args.dag == "finder":
        print()
        print(finder_summary(data_dir))
    else:
        print_nightly(data_dir)
    print(f"Profiles as written back: {root / 'sandbox'}; whole run in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
