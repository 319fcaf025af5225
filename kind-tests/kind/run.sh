#!/usr/bin/env bash
# The end-to-end suites on a kind cluster (where Docker exists; the lab replaces it
# here). Creates the cluster (kind-tests/kind/cluster.yaml), builds and loads the
# wiremesh image and the probe image, applies deploy/wiremesh.yaml, waits for the
# DaemonSet, and runs the suites written against the cluster-driver interface with
# WIREMESH_E2E_CLUSTER=kind.
#
# Usage: kind-tests/kind/run.sh [all|apply|suites]
#   all    (default) everything above; the cluster is deleted at the end unless KIND_KEEP=1
#   apply  only apply the manifest to $KUBECONFIG and wait for its CRDs and nodes
#          (no kind node needed: the lab's e2e test runs this step against its apiserver)
#   suites print the suites `all` would run
# Environment: KIND_CLUSTER_NAME (wiremesh), KIND_NODE_IMAGE (kind's default),
#   KUBECTL (kubectl), KIND (kind), KIND_PREBUILT_IMAGES (an images.txt of
#   hack/build-images.sh: `docker load` the wiremesh and probe images from there
#   instead of `docker build`; kind-env.sh sets it), KIND_MATCH (an ava --match
#   pattern, e.g. '!*neighbour discovery*' on an IPv4-only cluster), KIND_KEEP (0), KUBECONFIG (for apply), KIND_SUITES (every
#   suite that calls openCluster(), e.g. "mesh.e2e.test.ts netpol.e2e.test.ts").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
kubectl_bin="${KUBECTL:-kubectl}"
kind_bin="${KIND:-kind}"
cluster="${KIND_CLUSTER_NAME:-wiremesh}"
probe_image="wiremesh-probe:e2e"
# The image the DaemonSet names: built and loaded under that very name.
image="$(sed -n 's/^ *image: *\([^ ]*\).*/\1/p' "$root/deploy/daemonset.yaml" | head -1)"

say() { echo "kind-e2e: $*" >&2; }
die() { say "$*"; exit 1; }
kc() { "$kubectl_bin" --kubeconfig "$KUBECONFIG" "$@"; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "'$tool' is not on PATH"
  done
}

# Apply the combined manifest; wait until its CRDs are served and the nodes listed.
apply_manifest() {
  [[ -n "${KUBECONFIG:-}" ]] || die "KUBECONFIG is not set"
  say "applying deploy/wiremesh.yaml"
  kc apply -f "$root/deploy/wiremesh.yaml"
  # The admission policies holding each agent to its own node, where the checkout has them.
  if [[ -f "$root/deploy/admission.yaml" ]]; then
    say "applying deploy/admission.yaml"
    kc apply -f "$root/deploy/admission.yaml"
  fi
  kc wait --for=condition=established --timeout=60s \
    crd/ippools.wiremesh.io crd/ipamblocks.wiremesh.io
  kc get nodes -o wide
}

# The suites that reach the cluster only through the driver interface (mesh, pods,
# netpol, ...: each calls openCluster()), one path a line; the lab-only ones (*-lab,
# foundation, deploy, uninstall, cni-concurrency, ipam) use the lab directly.
# KIND_SUITES (space-separated file names under kind-tests/) picks some of them.
select_suites() {
  local s
  if [[ -n "${KIND_SUITES:-}" ]]; then
    for s in $KIND_SUITES; do
      s="$root/kind-tests/${s##*/}"
      [[ -f "$s" ]] || die "no suite $s"
      grep -q 'openCluster(' "$s" || die "${s##*/} does not go through openCluster(): it runs on the lab only"
      echo "$s"
    done
  else
    grep -l 'openCluster(' "$root"/kind-tests/*.e2e.test.ts || true
  fi
}

run_all() {
  need "$kind_bin" docker "$kubectl_bin"
  # The suites first, so a wrong KIND_SUITES fails before a cluster is made.
  local list suites=()
  list="$(select_suites)" || exit 1
  [[ -n "$list" ]] || die "no suite goes through openCluster()"
  mapfile -t suites <<<"$list"
  export KUBECONFIG="${KIND_KUBECONFIG:-$root/.cache/kind/$cluster.kubeconfig}"
  mkdir -p "$(dirname "$KUBECONFIG")"
  if "$kind_bin" get clusters 2>/dev/null | grep -qx "$cluster"; then
    say "using the existing cluster $cluster"
    "$kind_bin" export kubeconfig --name "$cluster" --kubeconfig "$KUBECONFIG"
  else
    say "creating the cluster $cluster"
    "$kind_bin" create cluster --name "$cluster" --config "$here/cluster.yaml" \
      --kubeconfig "$KUBECONFIG" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
  fi
  if [[ "${KIND_KEEP:-0}" != 1 ]]; then
    trap 'say "deleting the cluster $cluster"; "$kind_bin" delete cluster --name "$cluster"' EXIT
  fi

  if [[ -n "${KIND_PREBUILT_IMAGES:-}" ]]; then
    # Images built without Docker (hack/build-images.sh), as docker-archive tarballs.
    local ref file
    for ref in "$image" "$probe_image"; do
      file="$(awk -v r="$ref" '$1 == r {print $2}' "$KIND_PREBUILT_IMAGES")"
      [[ -n "$file" ]] || die "$KIND_PREBUILT_IMAGES lists no $ref"
      say "loading $ref from $file"
      docker load -i "$file"
    done
  else
    say "building $image and $probe_image"
    docker build -t "$image" "$root"
    docker build -t "$probe_image" -f "$here/probe.Dockerfile" "$root/kind-tests"
  fi
  "$kind_bin" load docker-image --name "$cluster" "$image" "$probe_image"

  apply_manifest
  kc -n kube-system rollout status daemonset/wiremesh-agent --timeout=300s
  # The agents create the default pool when the cluster has none.
  kc wait --for=create ippools.wiremesh.io/default-ipv4 --timeout=60s
  kc wait --for=condition=Ready nodes --all --timeout=300s

  say "running ${#suites[@]} suite(s) on kind: ${suites[*]##*/}"
  # node_modules/.bin first: the suites run on the project's Node.js 24 (the npm
  # package), not on whatever `node` the machine has.
  (cd "$root" && PATH="$root/node_modules/.bin:$PATH" WIREMESH_E2E_CLUSTER=kind WIREMESH_KUBECTL="$kubectl_bin" \
    node_modules/.bin/ava --tap --serial ${KIND_MATCH:+--match "$KIND_MATCH"} "${suites[@]}")
}

case "${1:-all}" in
  all) run_all ;;
  apply) need "$kubectl_bin"; apply_manifest ;;
  suites) select_suites ;;
  *) die "unknown step '$1' (all, apply, suites)" ;;
esac
