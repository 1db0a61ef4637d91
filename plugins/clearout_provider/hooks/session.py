"""What every vendor hook of this provider shares: its HTTP session and the state that never travels.

A hook is pickled when an executor ships an operator (and with it the hook) to a worker; the resolved
connection holds the secret, so only the configuration is pickled and the per-process state (resolved
connection, session, locks, rate limiters) is rebuilt on the other side. One ``requests`` session per
hook, with enough pooled connections for the thread pool of an instant batch (the hook's rate limiter,
not the pool, sets the pace). ``repr`` names the connection id only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from airflow.sdk import BaseHook

from clearout_provider import __version__

if TYPE_CHECKING:
    import requests

USER_AGENT = f"airflow-provider-clearout/{__version__}"

#: A hook's checked connection settings (each hook's own ``_ConnSettings``).
Settings = TypeVar("Settings")


class VendorHook(BaseHook, Generic[Settings]):
    """Base of the Clearout and Mail.so hooks (see the module docstring).

    A subclass reads and checks its connection in ``_settings_from`` (everything wrong is found there,
    before anything is sent) and builds its rate limiters in ``_limiters``; the first resolved connection
    is kept for the hook's life, for every thread.
    """

    #: The attribute holding the connection id (BaseHook's convention; each hook sets it).
    conn_name_attr: ClassVar[str]
    #: Attributes that are per process and never pickled; subclasses add their rate limiters.
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_conn", "_session", "_adopt_lock", "_log")

    def _init_runtime(self) -> None:
        """Per-process state: no resolved connection yet, no session; subclasses add their limiters."""
        self._conn: Settings | None = None
        self._session: requests.Session | None = None
        self._adopt_lock = threading.Lock()

    # ------------------------------------------------------------------ the connection, resolved once

    @staticmethod
    def _settings_from(conn: Any) -> Settings:
        """The checked settings of an Airflow connection; raises the vendor's config/auth error."""
        raise NotImplementedError

    def _limiters(self, conn: Settings) -> None:
        """Build the rate limiters from the resolved settings (called once, under the adopt lock)."""
        raise NotImplementedError

    def _adopt(self, conn: Settings) -> Settings:
        """Keep the first resolved connection and build the limiters from it (once, for all threads)."""
        with self._adopt_lock:
            if self._conn is None:
                self._limiters(conn)
                self._conn = conn
            return self._conn

    def _settings(self) -> Settings:
        if self._conn is None:
            return self._adopt(self._settings_from(self.get_connection(getattr(self, self.conn_name_attr))))
        return self._conn

    async def _asettings(self) -> Settings:
        if self._conn is None:
            from airflow.providers.common.compat.connection import get_async_connection

            conn = await get_async_connection(getattr(self, self.conn_name_attr), hook=self)
            return self._adopt(self._settings_from(conn))
        return self._conn

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conn_name_attr}={getattr(self, self.conn_name_attr)!r})"

    __str__ = __repr__

    def __getstate__(self) -> dict[str, Any]:
        """Pickle only the configuration: the secret, session and locks stay in this process."""
        return {k: v for k, v in self.__dict__.items() if k not in self.runtime_attributes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def get_conn(self) -> requests.Session:
        """The hook's HTTP session (one per hook, so calls reuse connections)."""
        import requests
        from requests.adapters import HTTPAdapter

        if self._session is None:
            self._session = requests.Session()
            self._session.headers["User-Agent"] = USER_AGENT
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        return self._session

    def close(self) -> None:
        """Close the HTTP session (the hook opens a new one if used again)."""
        if self._session is not None:
            self._session.close()
            self._session = None
