"""Throwaway PostgreSQL 15 and MLflow tracking servers on loopback, for tests and benchmarks of many
workers on one machine (the README's "Many workers" section does the same by hand).

    with PostgresServer() as pg, MlflowServer() as ml:
        ... storage=pg.url mlflow.tracking_uri=ml.url ...

PostgreSQL: `initdb` refuses root, so as root the cluster runs as the `postgres` user (its data folder
in a fresh folder of /tmp owned by that user); otherwise as the current user. It listens on 127.0.0.1
only (no Unix socket), on a free port, with trust authentication and fsync off: for tests, not data
that matters. Each server runs in its own process group and is stopped by that group's id.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PG_BIN = Path(os.environ.get("EBNN_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc: subprocess.Popen, sig: int, wait_s: float = 20) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


class _Server:
    """A server child process in its own process group: `stop()` ends it with STOP_SIGNAL and removes the
    scratch folder it made (`_scratch`); usable as a context manager around `start()`."""
    STOP_SIGNAL = signal.SIGTERM
    proc: subprocess.Popen | None = None
    _scratch: Path | None = None

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc, self.STOP_SIGNAL)
            self.proc = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PostgresServer(_Server):
    STOP_SIGNAL = signal.SIGINT  # PostgreSQL's fast shutdown
    def __init__(self, database: str = "optuna"):
        self.database = database
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.base: Path | None = None

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").is_file() and (PG_BIN / "postgres").is_file()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 60) -> "PostgresServer":
        root = os.geteuid() == 0
        self.base = self._scratch = Path(tempfile.mkdtemp(prefix="ebnn-pg-"))
        data = self.base / "data"
        kw: dict = {}
        if root:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, cwd=self.base, **kw)
        self.port = free_port()
        log = open(self.base / "postgres.log", "wb")
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=100"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.base, start_new_session=True, **kw)
        log.close()
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                                        connect_timeout=2)
                break
            except psycopg2.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("PostgreSQL did not start")
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.database}"')
        conn.close()
        return self



class MlflowServer(_Server):
    """`mlflow server --workers 1` (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: 2 processes) on 127.0.0.1,
    its own SQLite store and artifact folder under `folder`."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self._own_folder = folder is None
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> "MlflowServer":
        if self._own_folder:  # a fresh scratch folder per start, removed by stop()
            self.folder = self._scratch = Path(tempfile.mkdtemp(prefix="ebnn-mlflow-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        mlflow = Path(sys.executable).parent / "mlflow"
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        log = open(self.folder / "mlflow-server.log", "wb")
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "mlartifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the MLflow server did not start")
            time.sleep(0.5)

