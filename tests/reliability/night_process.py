"""Run one nightly run in a process of its own, so a test can SIGKILL it (a worker dying mid-task).

``python night_process.py <logical date ISO>``: the environment (connections, data dir, ledger, Airflow
home) comes from the test, exactly as a worker inherits its deployment's.
"""

from __future__ import annotations

import sys
from datetime import datetime

from dag_runs import shipped_dag
from world import DAG_ID

if __name__ == "__main__":
    moment = datetime.fromisoformat(sys.argv[1])
    # run_after makes the run id (see World.night): the same date is the same run.
    shipped_dag(DAG_ID).test(logical_date=moment, run_after=moment)
