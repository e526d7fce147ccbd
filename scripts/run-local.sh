#!/usr/bin/env bash
# Starts the local Neural Hive identity plane: spire-server on the embedded
# SQLite datastore. With ONCE=1 it checks health, prints a summary and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data/server
SOCK=./.data/server/api.sock

./bin/spire-server run -config conf/server/server.conf &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  ./bin/spire-server healthcheck -socketPath "$SOCK" >/dev/null 2>&1 && break
  sleep 0.1
done
./bin/spire-server healthcheck -socketPath "$SOCK"
./bin/spire-server bundle count -socketPath "$SOCK"
./bin/spire-server entry count -socketPath "$SOCK"

cat <<MSG

spire-server is running (trust domain neural-hive.local, SQLite at ./.data/server/datastore.sqlite3).
Admin socket: $SOCK — try:
  ./bin/spire-server entry show -socketPath $SOCK
  ./bin/spire-server token generate -socketPath $SOCK -spiffeID spiffe://neural-hive.local/ns/spire-system/sa/spire-agent
Ctrl-C stops it.
MSG
if [ "${ONCE:-}" = "1" ]; then exit 0; fi
wait $SERVER
