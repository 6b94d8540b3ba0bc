"""The cluster's backing services, real and on loopback ports: PostgreSQL (the MLflow server's
backend store), moto's S3 server (the artifact store), ``mlflow server --serve-artifacts``.

Each ``start()`` waits until the service answers and each ``stop()`` kills it; a failed start
raises with the last lines of the service's log.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from conftest import free_port, wait_for_port

BIN = Path(sys.executable).parent  # the project venv: moto_server, mlflow
BUCKET = "roadvision-mlflow"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
# The chart's in-cluster names; the pods' /etc/hosts maps them to 127.0.0.1.
MLFLOW_HOST = "mlflow.mlflow.svc.cluster.local"
REDIS_HOST = "redis.roadvision.svc.cluster.local"


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Service:
    """A subprocess with a log file; ``stop()`` is safe to call twice."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name, self.workdir = name, workdir
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None, **kw) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})}, **kw)

    def _failed(self, why: str) -> RuntimeError:
        return RuntimeError(f"{self.name}: {why}\n--- {self.log} ---\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


class Postgres(Service):
    """Debian's PostgreSQL in a throwaway cluster (initdb, trust auth on 127.0.0.1 only).

    postgres refuses to run as root: as root it runs as ``nobody``, in a data folder under the
    system temp dir (pytest's tmp_path is root-only)."""

    user = "mlflow"

    def __init__(self, workdir: Path) -> None:
        super().__init__("postgres", workdir)
        self.port = free_port()
        self.data: Path | None = None

    @property
    def uri(self) -> str:
        # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; the driver installed is psycopg2.
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/mlflow"

    def _bin(self, name: str) -> str:
        found = shutil.which(name) or next(iter(sorted(
            glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
        if found is None:
            raise RuntimeError(f"{name} not found: apt-get install postgresql "
                               "(make image-test installs it)")
        return found

    def _as_service_user(self) -> tuple[list[str], int | None]:
        if os.geteuid() != 0:
            return [], None
        nobody = pwd.getpwnam("nobody")
        return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                "--clear-groups"], nobody.pw_uid

    def start(self) -> None:
        prefix, uid = self._as_service_user()
        self.data = Path(tempfile.mkdtemp(prefix="rv-pg-"))
        if uid is not None:
            os.chown(self.data, uid, -1)
        pgdata = self.data / "data"
        run = subprocess.run([*prefix, self._bin("initdb"), "-D", str(pgdata), "-U", self.user,
                              "--auth=trust", "-E", "UTF8", "--no-sync"],
                             capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"initdb failed:\n{run.stdout}\n{run.stderr}")
        self._spawn([*prefix, self._bin("postgres"), "-D", str(pgdata), "-h", "127.0.0.1",
                     "-p", str(self.port), "-k", str(self.data), "-c", "fsync=off"])
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run([self._bin("pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port)], capture_output=True)
            if ready.returncode == 0:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise self._failed("did not become ready")
            time.sleep(0.3)
        run = subprocess.run([self._bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", self.user, "mlflow"], capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"createdb failed: {run.stderr}")

    def stop(self) -> None:
        super().stop()
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)
            self.data = None


class MotoS3(Service):
    """moto's S3 in server mode, with the artifact bucket created."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("moto", workdir)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._spawn([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)])
        try:
            wait_for_port(self.port, timeout=60)
        except TimeoutError:
            raise self._failed("did not listen") from None
        import boto3

        boto3.client("s3", endpoint_url=self.url, **{k.lower(): v for k, v in S3_KEYS.items()
                                                      if k != "AWS_DEFAULT_REGION"},
                     region_name=S3_KEYS["AWS_DEFAULT_REGION"]).create_bucket(Bucket=BUCKET)


class MlflowServer(Service):
    """``mlflow server`` as a cluster runs it: PostgreSQL backend, S3 artifacts behind its
    artifact proxy, and ``--allowed-hosts`` naming the in-cluster host (docs/deploy.md)."""

    def __init__(self, workdir: Path, postgres: Postgres, s3: MotoS3) -> None:
        super().__init__("mlflow", workdir)
        self.port = free_port()
        self.postgres, self.s3 = postgres, s3

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cluster_url(self) -> str:
        """The URL a pod uses: the chart's in-cluster service name."""
        return f"http://{MLFLOW_HOST}:{self.port}"

    def start(self) -> None:
        self._spawn([str(BIN / "mlflow"), "server", "--host", "127.0.0.1",
                     "--port", str(self.port), "--workers", "1",
                     "--backend-store-uri", self.postgres.uri, "--serve-artifacts",
                     "--artifacts-destination", f"s3://{BUCKET}/artifacts",
                     "--allowed-hosts", f"{MLFLOW_HOST}:*,127.0.0.1:*,localhost:*"],
                    env={**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": self.s3.url},
                    cwd=self.workdir)
        deadline = time.monotonic() + 180  # first start runs the schema migrations
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._failed("exited")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise self._failed("/health did not answer 200")
