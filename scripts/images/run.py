#!/usr/bin/env python3
"""Run a command in a built image the way a Kubernetes pod with the chart's security settings
runs it, on a machine where ``podman run`` cannot (no usable cgroups) and no Docker engine runs.

- root file system: the image itself, mounted read-only (``podman image mount``), as
  ``readOnlyRootFilesystem: true``;
- user: a numeric uid:gid (default: the image's ``USER``) with no supplementary groups and no
  capabilities, as ``runAsUser``/``runAsGroup`` with ``capabilities: {drop: [ALL]}``;
- writable paths: host folders bound where the pod mounts an emptyDir (``--tmp DIR`` -> /tmp);
- environment: ``env -i``, then the image's ``ENV``, then the pod's env, as the kubelet does;
- command/args: Kubernetes semantics (``command`` replaces ENTRYPOINT, ``args`` replaces CMD);
- network: the host's (a pod has its own network namespace; here the host's loopback stands in
  for the cluster network, so ports must be free). ``--host NAME=IP`` adds /etc/hosts entries so
  that in-cluster service names (mlflow.mlflow.svc.cluster.local) resolve as in a cluster.

It is an ``unshare --mount`` private mount namespace plus ``chroot --userspec``: needs root and
util-linux. The process keeps its PID through every exec, so killing it stops the container.
Stdlib only, so it runs with any python3.

    sudo scripts/images/run.py --tmp /tmp/pod-tmp --env K=V roadvision-serve:cpu -- --http_port=8081
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["image_config", "mount_image", "unmount_image", "pod_argv"]


def image_config(image: str) -> dict:
    """The image's OCI config (User, Env, Entrypoint, Cmd, WorkingDir)."""
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{json .Config}}", image],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out) or {}


def mount_image(image: str) -> str:
    """Mount the image's root file system read-only; returns the mount point."""
    return subprocess.run(["podman", "image", "mount", image], check=True,
                          capture_output=True, text=True).stdout.strip()


def unmount_image(image: str) -> None:
    subprocess.run(["podman", "image", "unmount", image], check=False, capture_output=True)


def pod_argv(image: str, rootfs: str, *, command: Sequence[str] | None = None,
             args: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
             tmp: str | None = None, hosts: Mapping[str, str] | None = None,
             binds: Sequence[tuple[str, str]] = (), user: str | None = None,
             workdir: str | None = None, config: dict | None = None,
             scratch: str | None = None) -> list[str]:
    """The host command line that runs ``image`` (mounted at ``rootfs``) as a pod would.

    ``binds``: (host path, container path) pairs, bound read-only. ``hosts``: name -> IP,
    written to an /etc/hosts file in ``scratch`` (default: a new temp folder).
    """
    config = image_config(image) if config is None else config
    user = user or config.get("User") or "0:0"
    uid, _, gid = user.partition(":")
    if not (uid.isdigit() and (gid or uid).isdigit()):
        raise SystemExit(f"user must be numeric uid:gid, got {user!r} (runAsNonRoot needs it)")
    gid = gid or uid
    argv = list(command) if command is not None else list(config.get("Entrypoint") or [])
    argv += list(args) if args is not None else list(config.get("Cmd") or [])
    if not argv:
        raise SystemExit(f"{image}: no command (the image has no ENTRYPOINT/CMD)")
    environment = dict(e.split("=", 1) for e in config.get("Env") or [])
    environment.update(env or {})
    workdir = workdir or config.get("WorkingDir") or "/"

    q = shlex.quote
    root = q(rootfs)
    script = ["set -e", f"mount -t proc -o nosuid,nodev,noexec proc {root}/proc",
              f"mount --rbind /dev {root}/dev",
              f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {root}/sys "
              f"|| mount -o bind,ro /sys {root}/sys"]
    if tmp is not None:
        script.append(f"mount --bind {q(tmp)} {root}/tmp")
    if hosts:
        hosts_file = Path(scratch or tempfile.mkdtemp(prefix="pod-hosts-")) / "hosts"
        lines = ["127.0.0.1 localhost", *(f"{ip} {name}" for name, ip in hosts.items())]
        hosts_file.write_text("\n".join(lines) + "\n")
        binds = [*binds, (str(hosts_file), "/etc/hosts")]
    for source, target in binds:
        script += [f"mount --bind {q(source)} {root}{q(target)}",
                   f"mount -o remount,bind,ro {root}{q(target)}"]
    env_words = " ".join(q(f"{k}={v}") for k, v in environment.items())
    # The image's own setpriv (util-linux) switches user with no_new_privs
    # (allowPrivilegeEscalation: false) and an empty capability bounding set (drop: [ALL]);
    # coreutils' chroot --userspec is the fallback (a non-zero uid has no capabilities either).
    if Path(rootfs, "usr/bin/setpriv").exists():
        switch = (f"chroot {root} /usr/bin/setpriv --reuid={uid} --regid={gid} --groups={gid} "
                  "--no-new-privs --bounding-set=-all")
    else:
        switch = f"chroot --userspec={uid}:{gid} --groups={gid} {root}"
    script.append(f"exec {switch} /usr/bin/env -i -C {q(workdir)} {env_words} "
                  + " ".join(q(a) for a in argv))
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image")
    parser.add_argument("args", nargs="*", help="container args (replace CMD)")
    parser.add_argument("--command", help="container command as JSON list (replaces ENTRYPOINT)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--tmp", help="host folder mounted at /tmp (the pod's emptyDir)")
    parser.add_argument("--host", action="append", default=[], metavar="NAME=IP")
    parser.add_argument("--bind", action="append", default=[], metavar="HOST:CONTAINER")
    parser.add_argument("--user", help="uid:gid (default: the image's USER)")
    opts = parser.parse_args(argv)
    for tool in ("podman", "unshare", "chroot"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (apt-get install podman util-linux coreutils)",
                  file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("error: needs root (a private mount namespace and chroot)", file=sys.stderr)
        return 2
    rootfs = mount_image(opts.image)
    try:
        cmd = pod_argv(opts.image, rootfs,
                       command=json.loads(opts.command) if opts.command else None,
                       args=opts.args or None,
                       env=dict(e.split("=", 1) for e in opts.env), tmp=opts.tmp,
                       hosts=dict(h.split("=", 1) for h in opts.host),
                       binds=[tuple(b.split(":", 1)) for b in opts.bind], user=opts.user)
        return subprocess.call(cmd)
    finally:
        unmount_image(opts.image)


if __name__ == "__main__":
    sys.exit(main())
