#!/usr/bin/env bash
# Makes this machine able to build and run the project's Dockerfile with rootful podman, idempotently:
#   1. installs podman, runc and debootstrap (apt) when missing;
#   2. writes a containers.conf this kernel accepts (runc, cgroupfs, explicit ulimits);
#   3. where no registry serves base images, builds a local stand-in tagged
#      docker.io/library/python:3.11-slim (Debian bookworm minbase + python3 + the host's CA certificates);
#   4. starts `podman system service` so the docker CLI (start_docker.sh, compose) can drive podman.
# Writes STATE_DIR/env.sh (CONTAINERS_CONF, DOCKER_HOST) for callers to source.
# Exit status 3 means "podman cannot be installed here" (callers skip, saying why); anything else non-zero
# is a real failure.
set -euo pipefail

STATE_DIR="${SPECIES_PODMAN_STATE:-/var/tmp/species-id-podman}"
BASE_TAG="docker.io/library/python:3.11-slim"
DEBIAN_TAG="localhost/debian-base:bookworm"
SOCKET="$STATE_DIR/podman.sock"
log() { printf '[setup_podman] %s\n' "$*" >&2; }
cannot() { log "cannot set up podman: $*"; exit 3; }

mkdir -p "$STATE_DIR"

# ---- 1. packages --------------------------------------------------------------------------------
missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || cannot "not root, and ${missing[*]} missing"
  command -v apt-get >/dev/null 2>&1 || cannot "no apt-get to install ${missing[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || cannot "apt-get update failed"
  apt-get install -y -qq podman runc debootstrap >/dev/null 2>&1 || cannot "apt-get install podman failed"
fi
[[ $(id -u) -eq 0 ]] || cannot "rootful podman needs root"

# ---- 2. containers.conf -------------------------------------------------------------------------
# crun fails on this kernel ("cgroups in hybrid mode not supported"), systemd is not PID 1, and podman's
# default ulimits exceed what an unprivileged-looking root may set here ("setrlimit: Operation not permitted").
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
cat >"$STATE_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$STATE_DIR/containers.conf"
podman info >/dev/null 2>&1 || cannot "podman info fails: $(podman info 2>&1 | tail -1)"

# ---- 3. stand-in base image ---------------------------------------------------------------------
apt_mirror() {
  # The host's own Debian mirror, read at run time (never written into the repository).
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  if [[ -z $uri ]]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '{print $2}' | grep -v security | head -1 || true)
  fi
  [[ -n $uri ]] || cannot "no Debian mirror in the host's apt sources"
  printf '%s\n' "$uri"
}

if podman image exists "$BASE_TAG"; then
  log "$BASE_TAG present"
else
  if ! podman image exists "$DEBIAN_TAG"; then
    mirror=$(apt_mirror)
    rootfs="$STATE_DIR/rootfs"
    rm -rf "$rootfs"
    log "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$STATE_DIR/debootstrap.log" 2>&1 ||
      { tail -20 "$STATE_DIR/debootstrap.log" >&2; exit 1; }
    tar -C "$rootfs" -c . | podman import - "$DEBIAN_TAG" >/dev/null
    rm -rf "$rootfs"
  fi
  ctx="$STATE_DIR/base-context"
  rm -rf "$ctx"
  mkdir -p "$ctx/certs"
  # Extra CAs (e.g. an egress proxy's) so pip over HTTPS works inside builds; copied per machine.
  cp /usr/local/share/ca-certificates/*.crt "$ctx/certs/" 2>/dev/null || true
  cat >"$ctx/Containerfile" <<'CONTAINERFILE'
FROM localhost/debian-base:bookworm
LABEL org.opencontainers.image.description="local stand-in for python:3.11-slim (Debian python3)"
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip python3-venv ca-certificates \
 && update-ca-certificates \
 && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && ln -sf /usr/bin/python3 /usr/local/bin/python3 \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip \
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8 REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
CONTAINERFILE
  log "building the stand-in $BASE_TAG"
  podman build --quiet --format docker -t "$BASE_TAG" "$ctx" >/dev/null
fi

# ---- 4. docker API socket -----------------------------------------------------------------------
pid_file="$STATE_DIR/service.pid"
service_ok() {
  # Answering, and started from / by this script (a service whose working directory was deleted
  # answers pings but cannot start containers: conmon inherits that directory).
  [[ -S $SOCKET && -f $pid_file ]] &&
    [[ $(readlink "/proc/$(cat "$pid_file")/cwd" 2>/dev/null) == / ]] &&
    curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1
}
if ! service_ok; then
  [[ -f $pid_file ]] && kill "$(cat "$pid_file")" 2>/dev/null || true
  pkill -f "podman system service --time=0 unix://$SOCKET" 2>/dev/null || true
  rm -f "$SOCKET"
  log "starting podman system service at $SOCKET"
  (cd / && { nohup podman system service --time=0 "unix://$SOCKET" >"$STATE_DIR/service.log" 2>&1 &
    echo $! >"$pid_file"; })
  for _ in $(seq 1 50); do
    service_ok && break
    sleep 0.2
  done
  service_ok || { log "podman service did not start"; exit 1; }
fi

cat >"$STATE_DIR/env.sh" <<ENV
export CONTAINERS_CONF="$STATE_DIR/containers.conf"
export DOCKER_HOST="unix://$SOCKET"
ENV
log "ready: source $STATE_DIR/env.sh"
printf '%s\n' "$STATE_DIR/env.sh"
