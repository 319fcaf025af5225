#!/usr/bin/env bash
# Runs the test tiers (static checks, unit, kernel, end-to-end) with ava's TAP
# output, keeps each tier's log under .cache/test-logs/, and ends with one line
# "N passed, N failed" over all tiers. Exits non-zero if any tier failed.
# Usage: hack/run-tests.sh [check|unit|netns|e2e]...   (default: all)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PATH="$PWD/node_modules/.bin:$PATH"
logs=.cache/test-logs
mkdir -p "$logs"
tiers=("$@")
((${#tiers[@]})) || tiers=(check unit netns e2e)

if [[ $(id -u) -ne 0 ]] && [[ " ${tiers[*]} " =~ " netns "|" e2e " ]]; then
  echo "run-tests: the kernel and end-to-end tiers need root (network namespaces, links, mounts)" >&2
  exit 1
fi

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
    *) echo "run-tests: unknown tier '$tier' (check, unit, netns, e2e)" >&2; exit 2 ;;
  esac
  rc=$?
  log="$logs/$tier.tap"
  cat "$log"
  p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)
  f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
  total=$(sed -n 's/^# tests \([0-9]*\)$/\1/p' "$log" | tail -1)
  p=${p:-0} f=${f:-0}
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
