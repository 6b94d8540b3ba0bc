# Shared by scripts/images/*.sh: readable failures instead of "command not found" half-way.
die() { echo "error: $*" >&2; exit 2; }
need() {
  local tool missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  die "${missing[*]} not installed. On Debian/Ubuntu: apt-get install podman buildah debootstrap
(no Docker engine is needed: images are built with podman build --isolation=chroot)."
}
