"""Local emulators of the Clearout, CleverTap and Mail.so APIs, served by one ASGI app.

The sandbox is the embedded default of the demo and the target of every test: hooks talk to it over
real loopback HTTP exactly as they talk to the vendors. Start it with ``clearout-sandbox`` or
``python -m clearout_provider.sandbox``; from Python, :class:`SandboxProcess` runs it in a child
process and waits until ``GET /healthz`` answers; the app itself is ``sandbox.app.create_app`` (imported
only where it is served, so that starting a sandbox does not load FastAPI into the caller).

Reliability tests get two more levers: fault switches changed while the server runs
(``POST /_sandbox/faults``, :meth:`SandboxProcess.set_faults`; see :mod:`.faults`) and restarts
(:meth:`SandboxProcess.restart`, gracefully or by SIGKILL), which a ``state_dir`` survives: the Clearout
account with its bulk lists mid-way (:mod:`.clearout_state`), the CleverTap profile changes and the
Mail.so account with its batches (:mod:`.mailso_state`).
"""

from clearout_provider.sandbox.process import SandboxProcess
from clearout_provider.sandbox.settings import SandboxSettings

__all__ = ["SandboxProcess", "SandboxSettings"]
