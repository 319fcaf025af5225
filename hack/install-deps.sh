#!/usr/bin/env bash
# Installs what wiremesh needs on a Debian machine, idempotently: the Debian
# packages the lab and the dataplane call (only those missing, so a warm run does
# not touch apt), the npm dependencies (Node.js 24 among them), and the Go-built
# tools (hack/build-tools.sh), then the lab's container images (hack/build-images.sh).
# Run as root; `make deps` calls it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=hack/progress.sh
source hack/progress.sh

# containernetworking-plugins: Debian's reference plugins, the baseline of bench cni-latency.
# The check tier runs shellcheck over every shell script of the repo.
# containerd and runc: the container runtime of the lab's kubeadm nodes. iptables,
# busybox and ca-certificates: what hack/build-images.sh copies into the images
# besides the tools above (kube-proxy's iptables, the images' shell and small tools).
# busybox, not busybox-static: the static build's shell runs its own applets before
# the PATH's programs, so `ip` in a script would be busybox's, not iproute2's.
# podman: the CNI client outside Kubernetes that kind-tests/real/podman runs on a lab
# node (without recommends, so without netavark: its CNI backend is what is tested).
# graphviz: `wiremesh graph -o svg` renders with its dot, and the graph test parses that SVG.
# bird2: the BGP speaker the agent configures for pools routed natively across subnets,
# and the lab's top-of-rack router. (No init system here starts its service.)
packages=(curl iproute2 nftables containernetworking-plugins wireguard-tools iputils-ping tcpdump iperf3 socat
  openssl util-linux procps kmod ethtool shellcheck containerd runc iptables busybox ca-certificates podman graphviz bird2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: Debian packages missing (${missing[*]}) and not root to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  progress_run install-deps "apt-get update" apt-get update -qq
  progress_run install-deps "apt-get install ${missing[*]}" \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci only when the lock file changed since the last install.
lock_hash="$(sha256sum package-lock.json | cut -c1-16)"
if [[ ! -x node_modules/.bin/node || "$(cat node_modules/.wiremesh-lock 2>/dev/null)" != "$lock_hash" ]]; then
  progress_run install-deps "npm ci" npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" >node_modules/.wiremesh-lock
fi
node_modules/.bin/node --version | grep -q '^v24\.' || { echo "install-deps: node_modules/.bin/node is not Node.js 24" >&2; exit 1; }

hack/build-tools.sh
hack/build-images.sh
