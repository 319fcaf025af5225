# shellcheck shell=bash
# Progress lines for the long steps of `make deps` (sourced by install-deps.sh and
# build-tools.sh). `progress_run PREFIX LABEL CMD...` runs CMD with its output kept
# in a log and says how long it took:
#   build-tools: [3/14] building kube-apiserver ... done in 95 s
# On a terminal a spinner and an elapsed timer run on that line while CMD works;
# elsewhere (CI logs, `make deps 2>&1 | tee`) a plain line before and one after, so
# a log reads the same however it was captured. CMD's output appears only when it
# fails, after the failure line. Set WIREMESH_PROGRESS=plain to force plain lines.

progress_pid=''
progress_log=''

# Stops the one command progress_run started (by its pid) if the script is cut short.
progress_cleanup() {
  if [[ -n "$progress_pid" ]]; then
    kill -TERM "$progress_pid" 2>/dev/null || true
    wait "$progress_pid" 2>/dev/null || true
    progress_pid=''
  fi
  [[ -z "$progress_log" ]] || rm -f "$progress_log"
  progress_log=''
}
trap progress_cleanup EXIT
trap 'progress_cleanup; exit 130' INT
trap 'progress_cleanup; exit 143' TERM

progress_tty() {
  [[ -t 2 && "${WIREMESH_PROGRESS:-}" != plain && "${TERM:-dumb}" != dumb ]]
}

# progress_run PREFIX LABEL CMD...: 0 on success, CMD's exit status otherwise.
progress_run() {
  local prefix="$1" label="$2"
  shift 2
  local start=$SECONDS status=0
  progress_log="$(mktemp)"
  if progress_tty; then
    "$@" >"$progress_log" 2>&1 &
    progress_pid=$!
    local frames="|/-\\" n=0
    while kill -0 "$progress_pid" 2>/dev/null; do
      printf '\r\033[K%s: %s ... %s %d s' "$prefix" "$label" "${frames:n%4:1}" $((SECONDS - start)) >&2
      n=$((n + 1))
      sleep 0.25
    done
    wait "$progress_pid" || status=$?
    progress_pid=''
    printf '\r\033[K' >&2
  else
    echo "$prefix: $label ..." >&2
    "$@" >"$progress_log" 2>&1 || status=$?
  fi
  if ((status != 0)); then
    echo "$prefix: $label ... failed after $((SECONDS - start)) s (exit status $status):" >&2
    cat "$progress_log" >&2
  else
    echo "$prefix: $label ... done in $((SECONDS - start)) s" >&2
  fi
  rm -f "$progress_log"
  progress_log=''
  return "$status"
}
