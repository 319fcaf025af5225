#!/usr/bin/env bash
# The kind run of the end-to-end suites on this project's test machines, which have
# no Docker of their own and no registry: everything kind-tests/kind/run.sh needs
# besides kind and Docker themselves is made here, then run.sh runs as it would on
# a user's machine. A user with a normal Docker runs run.sh directly (README, kind).
#
#   1. deps: Debian's docker.io and debootstrap (only when missing, services not
#      started by the install), and kind itself built with `go install` through the
#      module proxy into $WIREMESH_CACHE/bin (once per version).
#   2. A Docker daemon of the run's own (dockerd.sh: data under $WIREMESH_CACHE,
#      no firewall or sysctl changes, the runc shim), stopped at the end whatever
#      happened, with every container, network, mount and cgroup it made.
#   3. The node image (node-image.sh: Debian, containerd, the Go-built kubelet,
#      the locally built control plane; built once per change of its inputs).
#   4. kind's network, made before kind would make it: 198.19.0.0/24 (RFC 2544,
#      beside the labs' 198.18.0.0/16), bridge wmkind0, no masquerading.
#   5. run.sh with that node image and the wiremesh and probe images make deps
#      built (loaded with `docker load`, then `kind load` as a user does); it makes
#      the cluster, installs wiremesh with the manifest, runs the suites and deletes
#      the cluster.
#
# Usage: kind-tests/kind/kind-env.sh [run|deps|image|up|down]   (root)
#   run   (default) all of the above; ends with each step's time
#   deps  step 1 only;  image  steps 1-3 (leaves the daemon running: `down` stops it)
#   up    steps 1-4 and prints the environment for kind, docker and run.sh
#   down  deletes kind clusters of the daemon and stops it
# Environment: WIREMESH_CACHE, KIND_SUITES, KIND_KEEP (as run.sh; with `run` the
#   daemon then stays up too), KIND_VERSION (v0.33.0).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${WIREMESH_CACHE:-${HOME}/.cache/wiremesh}"
export WIREMESH_CACHE="$cache"
bin="$cache/bin"
kind_version="${KIND_VERSION:-v0.33.0}"
network=kind
subnet=198.19.0.0/24
gateway=198.19.0.1

say() { echo "kind-env: $*" >&2; }
die() { say "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (a Docker daemon, debootstrap)"

deps() {
  local missing=() p
  for p in docker.io debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    # docker.io's install would start the machine's own dockerd (iptables on) where
    # systemd runs: a policy-rc.d that forbids starting services, for the install only.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e "$policy" ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
      { ((made_policy)) && rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
    ((made_policy)) && rm -f "$policy"
  fi
  command -v go >/dev/null || die "'go' is not on PATH (Go 1.24 or newer)"
  mkdir -p "$bin" "$cache/kind"
  if [[ ! -x "$bin/kind" || "$(cat "$cache/kind/kind.version" 2>/dev/null)" != "$kind_version" ]]; then
    say "go install sigs.k8s.io/kind@$kind_version"
    GOBIN="$bin" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$kind_version"
    # node-image.sh takes kind's node files from the module Go downloaded.
    go mod download "sigs.k8s.io/kind@$kind_version"
    echo "$kind_version" >"$cache/kind/kind.version"
  fi
}

start_docker() {
  local line
  line="$("$here/dockerd.sh" start)"
  export "${line?}"
}

stop_docker() {
  "$here/dockerd.sh" status >/dev/null 2>&1 || return 0
  local c
  for c in $(PATH="$bin:$PATH" kind get clusters 2>/dev/null); do
    PATH="$bin:$PATH" kind delete cluster --name "$c" >&2 || true
  done
  "$here/dockerd.sh" stop
}

ensure_network() {
  docker network inspect "$network" >/dev/null 2>&1 && return 0
  docker network create -d bridge --subnet "$subnet" --gateway "$gateway" \
    -o com.docker.network.bridge.name=wmkind0 \
    -o com.docker.network.bridge.enable_ip_masquerade=false \
    -o com.docker.network.driver.mtu=1500 "$network" >/dev/null
}

env_lines() {
  echo "export DOCKER_HOST=$DOCKER_HOST"
  echo "export PATH=$bin:\$PATH"
  echo "export KIND_NODE_IMAGE=$node_image KIND_PREBUILT_IMAGES=$cache/images/images.txt KUBECTL=$bin/kubectl"
}

timings=()
timed() { # CMD...: runs CMD, notes its time, returns its status
  local start=$SECONDS rc=0
  "$@" || rc=$?
  timings+=("${1#step_} $((SECONDS - start))s")
  return $rc
}
step_deps() { deps; }
step_docker() { start_docker; }
step_image() { node_image="$("$here/node-image.sh")"; }
step_network() { ensure_network; }
step_suites() {
  # The cluster is IPv4-only (cluster.yaml), like the cluster tier's real nodes: the
  # netpol case about IPv6 neighbour discovery runs on the e2e tier's dual-stack lab.
  KIND_MATCH="${KIND_MATCH-!*neighbour discovery still works*}" \
    PATH="$bin:$PATH" KIND_NODE_IMAGE="$node_image" KIND_PREBUILT_IMAGES="$cache/images/images.txt" \
    KUBECTL="$bin/kubectl" "$root/kind-tests/kind/run.sh" all
}

case "${1:-run}" in
  deps) deps ;;
  image)
    deps
    start_docker
    "$here/node-image.sh"
    ;;
  up)
    deps
    start_docker
    node_image="$("$here/node-image.sh")"
    ensure_network
    env_lines
    ;;
  down) stop_docker ;;
  run)
    total=$SECONDS
    if [[ "${KIND_KEEP:-0}" != 1 ]]; then trap stop_docker EXIT; fi
    timed step_deps
    timed step_docker
    timed step_image
    timed step_network
    rc=0
    timed step_suites || rc=$?
    say "times: ${timings[*]}; total $((SECONDS - total))s"
    exit $rc
    ;;
  *) die "unknown step '$1' (run, deps, image, up, down)" ;;
esac
