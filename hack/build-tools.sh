#!/usr/bin/env bash
# Builds, once, the Go programs the lab and the tests run: etcd, kube-apiserver,
# kubectl, wireguard-go, cnitool and the reference CNI plugins. Each comes from Go modules
# through a small wrapper module under hack/ (nothing prebuilt is downloaded).
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

# build NAME MODULE_DIR PACKAGE [LDFLAGS]
build() {
  local name="$1" dir="$here/$2" pkg="$3" ldflags="${4:--s -w}"
  local want
  want="$( (cat "$dir/go.mod" "$dir/go.sum" "$dir"/*.go 2>/dev/null; go version; echo "$pkg $ldflags") | sha256sum | cut -c1-16)"
  if [[ -x "$bin/$name" && "$(cat "$stamps/$name" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  local start=$SECONDS
  mkdir -p "$(dirname "$bin/$name")" "$(dirname "$stamps/$name")"
  echo "build-tools: building $name ($pkg) ..." >&2
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$want" >"$stamps/$name"
  echo "build-tools: built $name in $((SECONDS - start))s" >&2
}

build etcd etcd .
build kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
# kubectl of the same release, for the kind scripts' steps tested against the lab.
build kubectl kube-apiserver k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
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
echo "build-tools: all tools in $bin" >&2
