#!/usr/bin/env bash
# Runs the test tiers (static checks, unit, kernel, end-to-end on process labs, on a
# real-node lab and on kind) with ava's TAP output, keeps each tier's log under
# .cache/test-logs/, and ends with one line "N passed, N failed" over all tiers.
# Exits non-zero if any tier failed.
# Usage: hack/run-tests.sh [check|unit|netns|e2e|cluster|kind]...   (default: all)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PATH="$PWD/node_modules/.bin:$PATH"
logs=.cache/test-logs
mkdir -p "$logs"
tiers=("$@")
((${#tiers[@]})) || tiers=(check unit netns e2e cluster kind)

if [[ $(id -u) -ne 0 ]] && [[ " ${tiers[*]} " =~ " netns "|" e2e "|" cluster "|" kind " ]]; then
  echo "run-tests: the kernel and end-to-end tiers need root (network namespaces, links, mounts)" >&2
  exit 1
fi

# The suites written against the cluster-driver interface, on one real-node lab
# (kubeadm, kubelets, containerd, wiremesh from its manifest) shared by all of them:
# brought up as `make lab` does, removed afterwards whatever happened. The podman
# suite's container must hold its address for 10 minutes: it starts before the other
# suites and is checked and removed after them, so the wait is not idle time.
cluster_lab=e2ereal
podman_suite=kind-tests/real/podman.e2e.test.ts
cluster_suites=(kind-tests/mesh.e2e.test.ts kind-tests/pods.e2e.test.ts kind-tests/netpol.e2e.test.ts
  kind-tests/real/services.e2e.test.ts kind-tests/route-damage.e2e.test.ts
  kind-tests/real/runtime.e2e.test.ts kind-tests/real/authority.e2e.test.ts
  kind-tests/real/drops.e2e.test.ts kind-tests/real/graph.e2e.test.ts)
cluster_last=(kind-tests/real/bgp.e2e.test.ts kind-tests/real/upgrades.e2e.test.ts)
run_cluster_tier() {
  local rc=0
  ./bin/wiremesh lab down --name "$cluster_lab" >/dev/null 2>&1 || true
  if ! ./bin/wiremesh lab up --name "$cluster_lab" --nodes 3 --pods-per-node 1; then
    echo "not ok - the real-node lab did not come up (see above)"
    ./bin/wiremesh lab down --name "$cluster_lab" || true
    return 1
  fi
  # The lab's real nodes are IPv4-only: the netpol case about IPv6 neighbour
  # discovery runs in the e2e tier, on its dual-stack process lab. ava's TAP reporter
  # crashes when its inactivity timeout fires, losing the tier's whole log, so the
  # slow cases set their own timeouts and the global one is wide.
  cluster_ava() {
    WIREMESH_E2E_CLUSTER=real WIREMESH_E2E_LAB="$cluster_lab" \
      ava --tap --serial --timeout=10m --match '!*neighbour discovery still works*' "$@"
  }
  WIREMESH_PODMAN_PHASE=start cluster_ava "$podman_suite" || rc=1
  cluster_ava "${cluster_suites[@]}" || rc=1
  WIREMESH_PODMAN_PHASE=finish cluster_ava "$podman_suite" "${cluster_last[@]}" || rc=1
  ./bin/wiremesh lab down --name "$cluster_lab" || rc=1
  return $rc
}

# The kind run (kind-tests/kind/kind-env.sh): a Docker daemon of its own, a kind node
# image built here, `kind create cluster` with 3 nodes, wiremesh from the manifest,
# mesh, pods and netpol through the kind driver (route-damage and the rest run on
# the real-node lab above), the cluster deleted and the daemon stopped at the end.
kind_suites="mesh.e2e.test.ts pods.e2e.test.ts netpol.e2e.test.ts"
run_kind_tier() {
  KIND_SUITES="$kind_suites" kind-tests/kind/kind-env.sh run
}

passed=0 failed=0 bad_tiers=()
for tier in "${tiers[@]}"; do
  start=$SECONDS
  echo "=== tier: $tier"
  case "$tier" in
    check)
      if tsc -p tsconfig.json && eslint . && prettier --check . >/dev/null; then
        passed=$((passed + 1)); echo "ok - typecheck, lint and format"
      else
        failed=$((failed + 1)); bad_tiers+=(check); echo "not ok - typecheck, lint or format (see above)"
      fi
      # Every shell script of the repo: by extension, and the scripts without one.
      mapfile -t scripts < <(git ls-files -co --exclude-standard '*.sh' .ci/run bin/wiremesh)
      if shellcheck "${scripts[@]}"; then
        passed=$((passed + 1)); echo "ok - shellcheck (${#scripts[@]} scripts)"
      else
        failed=$((failed + 1)); bad_tiers+=(check); echo "not ok - shellcheck (see above)"
      fi
      continue
      ;;
    unit) npm run --silent test:unit >"$logs/unit.tap" 2>&1 ;;
    netns) npm run --silent test:netns >"$logs/netns.tap" 2>&1 ;;
    e2e) npm run --silent test:e2e >"$logs/e2e.tap" 2>&1 ;;
    cluster) run_cluster_tier >"$logs/cluster.tap" 2>&1 ;;
    kind) run_kind_tier >"$logs/kind.tap" 2>&1 ;;
    *) echo "run-tests: unknown tier '$tier' (check, unit, netns, e2e, cluster, kind)" >&2; exit 2 ;;
  esac
  rc=$?
  log="$logs/$tier.tap"
  cat "$log"
  # A tier may run ava more than once (cluster): its summaries add up.
  p=$(awk '/^# pass [0-9]+$/ {n += $3} END {print n + 0}' "$log")
  f=$(awk '/^# fail [0-9]+$/ {n += $3} END {print n + 0}' "$log")
  total=$(awk '/^# tests [0-9]+$/ {n += $3; seen = 1} END {if (seen) print n}' "$log")
  passed=$((passed + p)); failed=$((failed + f))
  if [[ $rc -ne 0 || -z "$total" || "$total" == 0 ]]; then
    # A tier that crashed, ran no test or exited non-zero counts as a failure.
    [[ $f -eq 0 ]] && failed=$((failed + 1))
    bad_tiers+=("$tier")
  fi
  echo "=== tier $tier: ${p} passed, ${f} failed in $((SECONDS - start))s"
done

echo
if ((${#bad_tiers[@]})); then echo "failed tiers: ${bad_tiers[*]}"; fi
echo "tests: $passed passed, $failed failed"
((${#bad_tiers[@]} == 0))
