#!/usr/bin/env bash
# Builds, once, the Go programs the lab and the tests run: etcd, the Kubernetes
# binaries of a kubeadm cluster (kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubelet, kubeadm, kubectl), CoreDNS, wireguard-go,
# cnitool, the reference CNI plugins, and our own small programs (the pause
# process, the image assembler, the lab's runc shim, the CNI relay...). Each comes
# from Go modules through a small wrapper module under hack/ (nothing prebuilt is
# downloaded). hack/build-images.sh then packs them into the lab's images.
#
# Binaries land in $WIREMESH_CACHE/bin (default ~/.cache/wiremesh/bin), outside
# the work tree so that a fresh clone on the same machine reuses them. A stamp per
# tool records a hash of its wrapper module, the Go version and the flags, so a
# second run rebuilds nothing and takes well under a second; Go's own module and
# build caches make a rebuild after a change cheap as well.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${WIREMESH_CACHE:-${HOME}/.cache/wiremesh}"
bin="$cache/bin"
stamps="$cache/stamps"
mkdir -p "$bin" "$stamps"

command -v go >/dev/null || { echo "build-tools: 'go' is not on PATH (Go 1.24 or newer is needed)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

k8s_version="$(cd "$here/kube-apiserver" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
k8s_version="${k8s_version#v}"
[[ "$k8s_version" =~ ^1\.[0-9]+\.[0-9]+$ ]] || { echo "build-tools: cannot read the kubernetes version from hack/kube-apiserver/go.mod" >&2; exit 1; }
k8s_minor="$(echo "$k8s_version" | cut -d. -f2)"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=v$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
done
k8s_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
k8s_ldflags+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

# shellcheck source=hack/progress.sh
source "$here/progress.sh"

# build NAME MODULE_DIR PACKAGE [LDFLAGS]: queues a tool; build_queued builds the
# queue in order, so each line can say [i/N] (N = every tool, built or up to date).
names=() dirs=() pkgs=() flags=()
build() {
  names+=("$1") dirs+=("$here/$2") pkgs+=("$3") flags+=("${4:--s -w}")
}

# go_build DIR LDFLAGS OUT PACKAGE (in a subshell: the cd stays inside it)
go_build() (
  cd "$1" && go build -trimpath -ldflags "$2" -o "$3" "$4"
)

build_queued() {
  local total=${#names[@]} built=0 i
  for ((i = 0; i < total; i++)); do
    local name="${names[i]}" dir="${dirs[i]}" pkg="${pkgs[i]}" ldflags="${flags[i]}"
    local want
    want="$( (cat "$dir/go.mod" "$dir/go.sum" "$dir"/*.go 2>/dev/null; go version; echo "$pkg $ldflags") | sha256sum | cut -c1-16)"
    if [[ -x "$bin/$name" && "$(cat "$stamps/$name" 2>/dev/null)" == "$want" ]]; then
      continue
    fi
    mkdir -p "$(dirname "$bin/$name")" "$(dirname "$stamps/$name")"
    local what="$name"
    [[ "$pkg" == . ]] || what+=" ($pkg)"
    progress_run build-tools "[$((i + 1))/$total] building $what" \
      go_build "$dir" "$ldflags" "$bin/$name.tmp" "$pkg"
    mv "$bin/$name.tmp" "$bin/$name"
    echo "$want" >"$stamps/$name"
    built=$((built + 1))
  done
  echo "build-tools: all $total tools in $bin ($built built, $((total - built)) up to date)" >&2
}

build etcd etcd .
# One Kubernetes release for every component, each with the version stamp a release
# build has: kubeadm compares the kubelet's and the control plane's versions with its own.
build kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-scheduler kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kube-proxy kube-apiserver k8s.io/kubernetes/cmd/kube-proxy "$k8s_ldflags"
build kubelet kube-apiserver k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags"
build kubeadm kube-apiserver k8s.io/kubernetes/cmd/kubeadm "$k8s_ldflags"
# kubectl of the same release, for the kind scripts' steps tested against the lab.
build kubectl kube-apiserver k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
# The cluster DNS kubeadm deploys, at the version it names (hack/coredns/go.mod).
build coredns coredns github.com/coredns/coredns
# The pod sandbox process of the pause image (our own, standard library only).
build pause pause .
# Assembles the lab's images from layer tarballs (hack/build-images.sh).
build imagetool imagetool .
# The lab's containerd runs runc through this test-environment-only shim (see its
# opening comment); never part of what users install.
build wiremesh-runc-shim ../lab/runc-shim .
build wireguard-go gotools golang.zx2c4.com/wireguard
build cnitool gotools github.com/containernetworking/cni/cnitool
for plugin in main/bridge main/loopback ipam/host-local meta/portmap meta/bandwidth; do
  build "cni-plugins/${plugin#*/}" gotools "github.com/containernetworking/plugins/plugins/$plugin"
done
# The CNI relay installed as /opt/cni/bin/wiremesh: our own module, not a wrapper
# (cni/relay, standard library only; all CNI logic is in the agent).
build wiremesh-cni ../cni/relay .
# The agent's netlink worker (cni/netlinkd): pod veth/address/route work without a
# process start per CNI ADD or DEL.
build wiremesh-netlinkd ../cni/netlinkd .
# The traffic end of the network-policy suites (kind-tests/netpol): TCP, UDP and SCTP.
build wiremesh-prober ../kind-tests/prober .
# The cni-latency bench's driver (bench/cnirun): execs CNI plugins from inside a lab node.
build wiremesh-cnirun ../bench/cnirun .
build_queued
