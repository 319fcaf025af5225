#!/usr/bin/env bash
# A Docker daemon of the kind test run's own, for this project's TEST ENVIRONMENT
# only (a user's machine has its own Docker and needs none of this). It shares
# nothing with a Docker the machine may run: its own socket, data root (images and
# volumes, kept in $WIREMESH_CACHE/docker across runs, so the node image is built
# once), exec root, pid file, cgroup parent and an empty daemon.json.
#
# What it must not do on a machine shared with other labs, and how:
#   --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false
#       Docker would otherwise set the FORWARD policy to DROP and load br_netfilter,
#       which drops the bridged traffic of every lab on the machine, and turn on
#       forwarding; it touches neither the firewall nor a sysctl so.
#   --bridge=none
#       no docker0; kind's nodes sit on one bridge network made by kind-env.sh
#       in 198.19.0.0/24 (RFC 2544, beside the labs' 198.18.0.0/16).
#   --dns 198.19.0.254
#       Docker's embedded resolver forwards the names it does not know (anything
#       but the node containers) to an address of that network nobody answers, so
#       no query reaches the machine's resolver or leaves the machine.
#   --default-runtime wiremesh-runc
#       root here lacks CAP_SYS_RESOURCE, so runc cannot start a privileged
#       container (kind's nodes are privileged) until the lab's runc shim
#       (lab/runc-shim) drops that capability from the spec.
#   --oom-score-adjust 0
#       lowering its own oom_score_adj (Docker's default is -500) also needs
#       CAP_SYS_RESOURCE.
#
# Usage: kind-tests/kind/dockerd.sh start|stop|status
#   start  starts the daemon unless it runs, waits until it answers, prints the
#          DOCKER_HOST line to use; stop ends it (by its pid file: only the daemon
#          this script started) after removing every container it still runs, and
#          removes its run directory and its (empty) cgroups.
# Environment: WIREMESH_CACHE (~/.cache/wiremesh), WIREMESH_KIND_RUN (/run/wiremesh-kind).
set -euo pipefail

cache="${WIREMESH_CACHE:-${HOME}/.cache/wiremesh}"
run="${WIREMESH_KIND_RUN:-/run/wiremesh-kind}"
data="$cache/docker"
sock="$run/docker.sock"
pidfile="$run/dockerd.pid"
shim="$cache/bin/wiremesh-runc-shim"
cgroup_parent=wiremesh-kind
export DOCKER_HOST="unix://$sock"

say() { echo "kind-dockerd: $*" >&2; }
die() { say "$*"; exit 1; }

running_pid() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [[ -n "$pid" && -d "/proc/$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  echo "$pid"
}

start() {
  [[ $(id -u) -eq 0 ]] || die "needs root"
  command -v dockerd >/dev/null || die "'dockerd' is not installed (kind-tests/kind/kind-env.sh deps installs docker.io)"
  [[ -x "$shim" ]] || die "$shim is missing: run make deps"
  if running_pid >/dev/null; then
    echo "DOCKER_HOST=$DOCKER_HOST"
    return 0
  fi
  mkdir -p "$run" "$data"
  echo '{}' >"$run/daemon.json"
  # setsid: the daemon outlives this script (kind-env.sh stops it by pid file).
  setsid dockerd \
    --config-file "$run/daemon.json" \
    --host "$DOCKER_HOST" \
    --data-root "$data" \
    --exec-root "$run/exec" \
    --pidfile "$pidfile" \
    --cgroup-parent "/$cgroup_parent" \
    --storage-driver overlay2 \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --bridge=none \
    --dns 198.19.0.254 \
    --oom-score-adjust 0 \
    --add-runtime "wiremesh-runc=$shim" \
    --default-runtime wiremesh-runc \
    --log-level warn \
    </dev/null >"$run/dockerd.log" 2>&1 &
  local i
  for ((i = 0; i < 150; i++)); do
    if docker version >/dev/null 2>&1; then
      echo "DOCKER_HOST=$DOCKER_HOST"
      return 0
    fi
    if ((i > 5)) && ! running_pid >/dev/null && ! kill -0 $! 2>/dev/null; then
      tail -20 "$run/dockerd.log" >&2
      die "dockerd exited (log above, $run/dockerd.log)"
    fi
    sleep 0.2
  done
  tail -20 "$run/dockerd.log" >&2
  die "dockerd did not answer in 30 s"
}

unmount_under() { # DIR: every mount below DIR, deepest first
  local m
  { findmnt -rno TARGET || true; } | { grep -F "$1/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
}

stop() {
  local pid ids i
  if pid="$(running_pid)"; then
    ids="$(docker ps -aq 2>/dev/null || true)"
    if [[ -n "$ids" ]]; then
      # shellcheck disable=SC2086 # one id a word
      docker rm -f -v $ids >/dev/null 2>&1 || say "could not remove containers: $ids"
    fi
    # User networks (kind's) leave their bridges behind a stopped daemon.
    ids="$(docker network ls --filter type=custom -q 2>/dev/null || true)"
    if [[ -n "$ids" ]]; then
      # shellcheck disable=SC2086 # one id a word
      docker network rm $ids >/dev/null 2>&1 || say "could not remove networks: $ids"
    fi
    kill -TERM "$pid"
    for ((i = 0; i < 150; i++)); do
      [[ -d "/proc/$pid" ]] || break
      sleep 0.2
    done
    [[ ! -d "/proc/$pid" ]] || { say "dockerd $pid did not stop in 30 s: killing it"; kill -KILL "$pid" || true; }
  fi
  # Its mounts under the exec root (netns files, shm) go with the daemon; any left
  # by a daemon that was killed are unmounted here, deepest first.
  if [[ -d "$run" ]]; then
    unmount_under "$run"
    rm -rf "$run"
  fi
  unmount_under "$data"
  local dir
  for dir in /sys/fs/cgroup/*/"$cgroup_parent"; do
    [[ -d "$dir" ]] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pid="$(running_pid)"; then echo "dockerd $pid at $DOCKER_HOST"; else echo "not running"; exit 1; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac
