#!/usr/bin/env bash
# Starts the local Neural Hive identity plane and runs one Flow C task through it:
#
#   spire-server (embedded SQLite, conf/server/server.conf)
#   spire-agent  (join token minted here, bootstrap bundle from `bundle show`,
#                 conf/agent/agent.conf with discover_workload_path = true)
#   the runbook's registration entries, with local unix selectors in place of k8s:ns/k8s:sa
#   service-registry, orchestrator-dynamic, worker-agents
#   flowc-submit: one task, JWT-SVID -> orchestrator -> C3 discover at the registry (mTLS)
#                 -> dispatch to the worker (mTLS) -> result
#
# then prints a summary (identities and their expiry, the Flow C result, the auth metrics).
# It keeps running until Ctrl-C and then stops everything. With ONCE=1 it exits after the
# summary: status 0 only if the Flow C task succeeded with the right result.
#
# Every run starts from an empty ./.data (state of the previous run is removed); logs are in
# ./.data/logs. Run it from anywhere: it works in the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
BIN=$ROOT/bin
DATA=$ROOT/.data
LOGS=$DATA/logs
GO=${GO:-go}
TD=neural-hive.local
ALIAS=spiffe://$TD/ns/spire-system/sa/spire-agent
SERVER_SOCK=$DATA/server/api.sock
REGISTRY_ADDR=127.0.0.1:50051
ORCH_ADDR=127.0.0.1:50052
WORKER_ADDR=127.0.0.1:50053
REGISTRY_OPS=127.0.0.1:9090
ORCH_OPS=127.0.0.1:9091
WORKER_OPS=127.0.0.1:9092

say() { printf '%s\n' "$*"; }
die() { printf 'run-local: %s\n' "$*" >&2; exit 1; }

# --- processes --------------------------------------------------------------------------------
PIDS=()
NAMES=()
# Each process gets its own session (setsid), so that Ctrl-C reaches only this script, which
# then stops them in reverse order: the worker deregisters while the registry still runs.
SETSID=()
if command -v setsid >/dev/null; then SETSID=(setsid); fi
start() { # start NAME CMD... : runs CMD in the background, output in .data/logs/NAME.log
  local name=$1
  shift
  "${SETSID[@]}" "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}
stop_all() {
  trap - EXIT INT TERM HUP
  local i pid n
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for ((n = 0; n < 100; n++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ ${#PIDS[@]} -eq 0 ] || say "Stopped: ${NAMES[*]} (logs in .data/logs)."
}
trap 'stop_all' EXIT
trap 'stop_all; exit 130' INT TERM HUP

# wait_until DESC CMD... : retries CMD for up to 30s.
wait_until() {
  local desc=$1 i
  shift
  for ((i = 0; i < 300; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "$desc did not come up within 30s; see $LOGS"
}

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

# --- build and checks --------------------------------------------------------------------------
[ -x "$BIN/spire-server" ] && [ -x "$BIN/spire-agent" ] || die "bin/spire-server and bin/spire-agent missing: run 'make run', which builds them"
for cmd in service-registry orchestrator-dynamic worker-agents flowc-submit; do
  CGO_ENABLED=0 $GO build -trimpath -o "$BIN/$cmd" "./cmd/$cmd"
done
for addr in 127.0.0.1:8081 127.0.0.1:8080 127.0.0.1:8082 127.0.0.1:9988 127.0.0.1:9989 \
  $REGISTRY_ADDR $ORCH_ADDR $WORKER_ADDR $REGISTRY_OPS $ORCH_OPS $WORKER_OPS; do
  if port_busy "$addr"; then die "$addr is in use (another 'make run'?)"; fi
done

# The runbook's socket when we may create it (root), else one under .data (-socketPath).
if mkdir -p /run/spire/sockets 2>/dev/null && [ -w /run/spire/sockets ]; then
  AGENT_SOCK=/run/spire/sockets/agent.sock
  AGENT_ARGS=()
  if [ -S "$AGENT_SOCK" ] && "$BIN/spire-agent" healthcheck -socketPath "$AGENT_SOCK" >/dev/null 2>&1; then
    die "an agent already serves $AGENT_SOCK"
  fi
else
  AGENT_SOCK=$DATA/agent/agent.sock
  AGENT_ARGS=(-socketPath "$AGENT_SOCK")
fi

rm -rf "$DATA"
mkdir -p "$DATA/server" "$DATA/agent" "$LOGS"

# --- identity plane ----------------------------------------------------------------------------
start spire-server "$BIN/spire-server" run -config conf/server/server.conf
wait_until spire-server "$BIN/spire-server" healthcheck -socketPath "$SERVER_SOCK"
"$BIN/spire-server" bundle show -socketPath "$SERVER_SOCK" >"$DATA/agent/bootstrap.pem"
TOKEN=$("$BIN/spire-server" token generate -socketPath "$SERVER_SOCK" -spiffeID "$ALIAS" | awk '/^Token:/ {print $2}')
[ -n "$TOKEN" ] || die "token generate printed no token"
start spire-agent "$BIN/spire-agent" run -config conf/agent/agent.conf -joinToken "$TOKEN" "${AGENT_ARGS[@]}"
wait_until spire-agent "$BIN/spire-agent" healthcheck -socketPath "$AGENT_SOCK"

# The runbook's entries ("Criar Nova Entry SPIFFE"): same SPIFFE IDs, parent and -ttl 3600.
# Locally every process runs as the same user, so the k8s:ns/k8s:sa selectors become this uid
# plus the path of each service's binary (the agent's discover_workload_path = true).
SERVICES=(
  "service-registry spiffe://$TD/ns/neural-hive-execution/sa/service-registry"
  "orchestrator-dynamic spiffe://$TD/ns/neural-hive-orchestration/sa/orchestrator-dynamic"
  "worker-agents spiffe://$TD/ns/neural-hive-execution/sa/worker-agents"
  "flowc-submit spiffe://$TD/ns/neural-hive-orchestration/sa/flowc-submit"
)
for s in "${SERVICES[@]}"; do
  read -r name id <<<"$s"
  "$BIN/spire-server" entry create -socketPath "$SERVER_SOCK" -spiffeID "$id" -parentID "$ALIAS" \
    -selector "unix:uid:$(id -u)" -selector "unix:path:$BIN/$name" -ttl 3600 >/dev/null
done

# --- services ----------------------------------------------------------------------------------
start service-registry "$BIN/service-registry" -socketPath "$AGENT_SOCK" -listen $REGISTRY_ADDR -metricsAddr $REGISTRY_OPS
start orchestrator-dynamic "$BIN/orchestrator-dynamic" -socketPath "$AGENT_SOCK" -listen $ORCH_ADDR -metricsAddr $ORCH_OPS \
  -registry $REGISTRY_ADDR
start worker-agents "$BIN/worker-agents" -socketPath "$AGENT_SOCK" -listen $WORKER_ADDR -metricsAddr $WORKER_OPS \
  -registry $REGISTRY_ADDR -trustBundle "$DATA/agent/bootstrap.pem"
wait_until service-registry curl -fsS "http://$REGISTRY_OPS/ready"
wait_until orchestrator-dynamic curl -fsS "http://$ORCH_OPS/ready"
wait_until "worker-agents (registration)" curl -fsS "http://$WORKER_OPS/ready"

# --- Flow C ------------------------------------------------------------------------------------
PAYLOAD="Neural Hive Flow C: intent -> plan -> execution"
WANT=$(printf '%s' "$PAYLOAD" | sha256sum | awk '{print $1}')
FLOWC_STATUS=0
"$BIN/flowc-submit" -socketPath "$AGENT_SOCK" -orchestrator $ORCH_ADDR -capability sha256 -payload "$PAYLOAD" \
  >"$DATA/flowc.txt" 2>&1 || FLOWC_STATUS=$?
GOT=$(awk '$1 == "output" {print $2}' "$DATA/flowc.txt")
if [ "$FLOWC_STATUS" -eq 0 ] && [ "$GOT" != "$WANT" ]; then FLOWC_STATUS=1; fi
BATCH=$("$BIN/flowc-submit" -socketPath "$AGENT_SOCK" -orchestrator $ORCH_ADDR -capability wordcount \
  -payload "$PAYLOAD" -n 50 2>&1 | tail -n 1) || true

# --- summary -----------------------------------------------------------------------------------
metrics() { curl -fsS "http://$1/metrics"; }
svid_line() { # svid_line NAME OPS_ADDR
  local line id secs
  line=$(metrics "$2" | grep '^spiffe_x509_svid_expiration_seconds{' || true)
  id=$(sed -n 's/.*spiffe_id="\([^"]*\)".*/\1/p' <<<"$line")
  secs=$(awk '{printf "%d", $2}' <<<"$line")
  printf '  %-21s %-75s expires in %ss (%s)\n' "$1" "$id" "$secs" "$(date -u -d "+$secs seconds" +%Y-%m-%dT%H:%M:%SZ)"
}
rate() { # rate OPS_ADDR PREFIX : failures / attempts from the counters
  metrics "$1" | awk -v p="$2" '
    index($0, p "_attempts_total{") == 1 { a += $NF }
    index($0, p "_failures_total{") == 1 { f += $NF }
    END { if (a > 0) printf "%d of %d attempts failed (%.1f%%; runbook alert above 5%%)", f, a, 100 * f / a; else print "no attempts yet" }'
}

say ""
say "== Neural Hive identity plane (trust domain $TD) =="
say "  spire-server  admin socket $SERVER_SOCK, TCP 127.0.0.1:8081, SQLite $DATA/server/datastore.sqlite3"
say "  spire-agent   Workload API $AGENT_SOCK, node alias $ALIAS"
say ""
say "== Identities (X509-SVIDs; spiffe_x509_svid_expiration_seconds of each service) =="
svid_line service-registry $REGISTRY_OPS
svid_line orchestrator-dynamic $ORCH_OPS
svid_line worker-agents $WORKER_OPS
say "  flowc-submit          spiffe://$TD/ns/neural-hive-orchestration/sa/flowc-submit (JWT-SVID for the orchestrator, per task)"
say ""
say "== Registration entries (runbook selectors -> local selectors) =="
for s in "${SERVICES[@]}"; do
  read -r name id <<<"$s"
  printf '  %-21s k8s:ns:%s k8s:sa:%s  ->  unix:uid:%s unix:path:%s\n' "$name" \
    "$(sed 's|.*/ns/\([^/]*\)/.*|\1|' <<<"$id")" "${id##*/}" "$(id -u)" "$BIN/$name"
done
say ""
say "== Flow C =="
sed 's/^/  /' "$DATA/flowc.txt"
if [ "$FLOWC_STATUS" -eq 0 ]; then
  say "  result OK: matches sha256sum of the payload"
else
  say "  FAILED (status $FLOWC_STATUS; expected output $WANT)"
fi
say "  batch of 50 wordcount tasks from a new flowc-submit process (its first task pays the TLS handshakes): ${BATCH:-none}"
say ""
say "== Auth metrics =="
say "  service-registry (curl http://$REGISTRY_OPS/metrics | grep -E \"(grpc_auth_attempts|grpc_auth_failures)\"):"
metrics $REGISTRY_OPS | grep -E '^(grpc_auth_attempts|grpc_auth_failures)' | sed 's/^/    /' || true
say "    -> $(rate $REGISTRY_OPS grpc_auth)"
say "  orchestrator-dynamic (curl http://$ORCH_OPS/metrics | grep -E \"(grpc_jwt_auth_attempts|grpc_jwt_auth_failures)\"):"
metrics $ORCH_OPS | grep -E '^(grpc_jwt_auth_attempts|grpc_jwt_auth_failures)' | sed 's/^/    /' || true
say "    -> $(rate $ORCH_OPS grpc_jwt_auth)"
say "  worker-agents (curl http://$WORKER_OPS/metrics | grep grpc_auth):"
metrics $WORKER_OPS | grep -E '^(grpc_auth_attempts|grpc_auth_failures)' | sed 's/^/    /' || true
say "    -> $(rate $WORKER_OPS grpc_auth)"
say ""

if [ "${ONCE:-}" = "1" ]; then
  exit "$FLOWC_STATUS"
fi
say "Running. Try, in another terminal:"
say "  ./bin/flowc-submit -socketPath $AGENT_SOCK -capability wordcount -payload 'one two three'"
say "  ./bin/spire-server entry show -socketPath $SERVER_SOCK"
say "  curl -s http://$REGISTRY_OPS/metrics | grep -E '(grpc_auth_attempts|grpc_auth_failures)'"
say "Ctrl-C stops everything."
set +e
wait -n "${PIDS[@]}"
say "run-local: a process exited; stopping the plane (see $LOGS)." >&2
exit 1
