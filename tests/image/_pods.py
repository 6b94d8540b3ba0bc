"""Built images run as pods (scripts/images/run.py): read-only root from the image, the chart's
uid, a host folder as the /tmp emptyDir, in-cluster service names in /etc/hosts.

The predictor pod's command line, environment and security settings come from the rendered Helm
chart, so the test runs what ``helm install`` would deploy, not a hand-copied variant.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _cluster import Service

ROOT = Path(__file__).resolve().parents[2]
SERVE_IMAGE = os.environ.get("SERVE_IMAGE", "roadvision-serve:cpu")
TRAIN_IMAGE = os.environ.get("TRAIN_IMAGE", "roadvision-train:cpu")


def _runner():
    spec = importlib.util.spec_from_file_location("rv_image_run", ROOT / "scripts/images/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _runner()


def emptydir() -> Path:
    """A host folder for a pod's emptyDir: world-writable with the sticky bit, like /tmp, and
    under the system temp dir (pytest's tmp_path is root-only, the pod runs as uid 10001)."""
    path = Path(tempfile.mkdtemp(prefix="rv-pod-tmp-"))
    path.chmod(0o1777)
    return path


def pod_settings(container: dict[str, Any], pod: dict[str, Any],
                 secrets: dict[str, str]) -> dict[str, Any]:
    """Environment, user and args of a rendered container; ``secretKeyRef`` values come from
    ``secrets`` (key -> value), as the kubelet would fill them from the Secret."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    user = f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    return {"env": env, "user": user, "args": list(container.get("args", [])),
            "read_only_root": security.get("readOnlyRootFilesystem", False),
            "run_as_non_root": security.get("runAsNonRoot", False),
            "emptydirs": sorted(path for path, name in mounts.items() if name in empty)}


class Pod(Service):
    """One image run as a pod; ``start()`` returns at once, ``wait()`` for a finite command."""

    def __init__(self, name: str, workdir: Path, image: str) -> None:
        super().__init__(name, workdir)
        self.image = image
        self.rootfs: str | None = None

    def start(self, *, tmp: Path, hosts: dict[str, str], env: dict[str, str], user: str,
              command: list[str] | None = None, args: list[str] | None = None) -> None:
        self.rootfs = run.mount_image(self.image)
        argv = run.pod_argv(self.image, self.rootfs, command=command, args=args, env=env,
                            tmp=str(tmp), hosts=hosts, user=user, scratch=str(self.workdir))
        self._spawn(argv, env={})

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise self._failed(f"still running after {timeout:.0f} s") from None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        super().stop()
        if self.rootfs is not None:
            run.unmount_image(self.image)
            self.rootfs = None
