"""Where a search keeps its state: the Optuna storage URL, the MLflow tracking URI, the artefacts folder.

`check_*` look before any work and create nothing: a folder is probed by creating and removing a
temporary folder in its nearest existing ancestor (so a read-only file system or a path under a file is
caught even for root), a database server by connecting to it (5 s timeout), an MLflow tracking server
by its /health endpoint. Each failure is a `PlaceError` naming the key and the value (passwords
masked).

`schema_lock(url)` serialises the creation or migration of a database schema between processes that
start together: an flock on the SQLite file's folder, a PostgreSQL advisory lock, nothing elsewhere.
Both Optuna's storage and MLflow's SQL store (tracking.client.open_store) are opened under it, so simultaneous starts on a fresh
store never run two migrations at once (MLflow's `duplicate column name: step`).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5
ADVISORY_LOCK_KEY = 0x6562_6E6E  # "ebnn"
SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")


class PlaceError(ValueError):
    def __init__(self, key: str, value: str, why: str):
        self.key, self.value, self.why = key, value, why
        super().__init__(f"{key}={value}: {why}")


def shown(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        return u.render_as_string(hide_password=True) if u.password else url
    except Exception:
        return url


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""


# ---- checks (no side effects) -------------------------------------------------------------------
def check_folder(path: Path | str, key: str, value: str | None = None) -> Path:
    """`path` is, or can be created as, a folder this process can write in."""
    value = str(path) if value is None else value
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    q = p
    while not os.path.lexists(q):
        q = q.parent
    if not q.is_dir():
        raise PlaceError(key, value, f"{q} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".ebnn-write-probe-", dir=q)
        os.rmdir(probe)
    except OSError as e:
        raise PlaceError(key, value, f"cannot write in {q} ({e.strerror})") from None
    return p


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None: in memory)."""
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    if not db or db == ":memory:":
        return None
    return Path(os.path.abspath(db))


def _check_sqlite(url: str, key: str) -> None:
    path = sqlite_path(url)
    if path is None:
        return
    if os.path.lexists(path):
        if not path.is_file():
            raise PlaceError(key, url, f"{path} is not a file")
        try:
            with open(path, "r+b"):
                pass
        except OSError as e:
            raise PlaceError(key, url, f"cannot write {path} ({e.strerror})") from None
    check_folder(path.parent, key, url)


def _check_server_db(url: str, key: str) -> None:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    u = make_url(url)
    args = {}
    if u.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        engine = sqlalchemy.create_engine(u, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError, sqlalchemy.exc.ArgumentError) as e:
        raise PlaceError(key, shown(url), f"no database driver for {u.drivername} ({_first_line(e)})") from None
    try:
        with engine.connect():
            pass
    except Exception as e:  # OperationalError and friends: refused, timed out, bad password, no database
        raise PlaceError(key, shown(url), f"cannot connect ({_first_line(getattr(e, 'orig', None) or e)})") from None
    finally:
        engine.dispose()


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def check_db_url(url: str, key: str) -> None:
    """An SQLAlchemy database URL: parsable, a driver installed, and the database reachable
    (SQLite: its file and folder writable)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not isinstance(url, str) or not url:
        raise PlaceError(key, str(url), "must be a database URL")
    try:
        u = make_url(url)
    except ArgumentError:
        raise PlaceError(key, url, "not a database URL (e.g. sqlite:///path/optuna.db or "
                                   "postgresql+psycopg2://user:password@127.0.0.1:5432/optuna)") from None
    if u.get_backend_name() == "sqlite":
        _check_sqlite(url, key)
    else:
        _check_server_db(url, key)


def check_storage(url: str, key: str = "storage") -> None:
    check_db_url(url, key)


def check_tracking_uri(uri: str, key: str = "mlflow.tracking_uri") -> None:
    """An MLflow tracking URI: an SQL store (as check_db_url) or a tracking server (http(s), /health)."""
    if not isinstance(uri, str) or not uri:
        raise PlaceError(key, str(uri), "must be an MLflow tracking URI")
    scheme = _scheme(uri)
    if scheme in SQL_SCHEMES:
        check_db_url(uri, key)
    elif scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as r:
                if r.status != 200:
                    raise PlaceError(key, uri, f"{url} answered {r.status}, not an MLflow tracking server")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise PlaceError(key, uri, f"no MLflow tracking server answers ({_first_line(reason)})") from None
    elif scheme in ("file", "") or os.path.isabs(uri):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
            raise PlaceError(key, uri, "MLflow 3.17 refuses a file store; use sqlite:///PATH/mlflow.db "
                                       "or a tracking server http://HOST:PORT")
        path = uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):] if scheme == "file" else uri
        check_folder(path, key, uri)
    # other schemes (databricks, ...) are MLflow's to check


# ---- opening ------------------------------------------------------------------------------------
@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Exclusive between processes while a store's schema is created or migrated (see module doc)."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        path = sqlite_path(url)
        if path is None:
            yield
            return
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    elif scheme in ("postgresql", "postgres"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
        finally:
            engine.dispose()
    else:
        yield


def retrying(fn: Callable[[], T], attempts: int = 5, what: str = "") -> T:
    """fn() again after a short random pause when a concurrent start makes it fail (schema races on
    servers without an advisory lock); the last failure propagates."""
    import random

    for i in range(attempts):
        try:
            return fn()
        except Exception:
            if i == attempts - 1:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")

