"""Run one nightly run in a process of its own, so a test can SIGKILL it (a worker dying mid-task).

``python night_process.py <logical date ISO>``: the environment (connections, data dir, ledger, Airflow
home) comes from the test, exactly as a worker inherits its deployment's.
"""

from __future__ import annotations

import sys
from datetime import datetime

from world import nightly_dag

if __name__ == "__main__":
    moment = datetime.fromisoformat(sys.argv[1])
    nightly_dag().test(logical_date=moment, run_after=moment)  # run_after makes the run id: see World.night
