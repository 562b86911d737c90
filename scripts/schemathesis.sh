#!/usr/bin/env bash
# Runs Schemathesis (from PyPI) against the service's own OpenAPI document:
# every operation of /api/v1 with a valid user token (and admin token for a
# second pass), checking that no response is a 5xx and that every response
# conforms to the documented schema.
#
#   scripts/schemathesis.sh                 # debug binary, 20 examples per operation
#   PROFILE=release MAX_EXAMPLES=200 scripts/schemathesis.sh
#
# Everything it creates lives under target/: the venv, the data directory and
# the reports. The exit status is Schemathesis's (0 = no failures).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROFILE=${PROFILE:-debug}
MAX_EXAMPLES=${MAX_EXAMPLES:-20}
SCHEMATHESIS_VERSION=${SCHEMATHESIS_VERSION:-4.*}
WORK="$ROOT/target/schemathesis"
VENV="$WORK/venv"
mkdir -p "$WORK"

if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [[ "$PROFILE" == release ]]; then
  cargo build --quiet --release -p webhook-service
else
  cargo build --quiet -p webhook-service
fi
BIN="$ROOT/target/$PROFILE/webhook-service"

# Known secrets, a fresh data directory, limits out of the way of the fuzzer.
export JWT_SECRET="schemathesis-jwt-secret-0123456789abcdef"
export INTERNAL_SERVICE_SECRET="schemathesis-internal-secret-0123456789"
export WEBHOOK_ENCRYPTION_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
export WEBHOOK_DATA_DIR="$WORK/data"
export HOST=127.0.0.1 PORT=0 LOG_FORMAT=json LOG_LEVEL=info
export RATE_LIMIT_MAX_REQUESTS=1000000 INTERNAL_RATE_LIMIT_MAX_REQUESTS=1000000
# Receivers the fuzzer registers are never contacted for real: keep attempts short.
export WEBHOOK_TIMEOUT=1000
rm -rf "$WEBHOOK_DATA_DIR"
mkdir -p "$WEBHOOK_DATA_DIR"

"$BIN" serve >"$WORK/listen.txt" 2>"$WORK/service.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
BASE=""
for _ in $(seq 1 100); do
  BASE=$(sed -n 's/^webhook-service listening on //p' "$WORK/listen.txt")
  [[ -n "$BASE" ]] && break
  sleep 0.1
done
[[ -n "$BASE" ]] || { echo "service did not start"; cat "$WORK/service.log"; exit 1; }

USER_TOKEN=$("$BIN" token --user schemathesis-user --ttl 2h)
ADMIN_TOKEN=$("$BIN" token --user schemathesis-admin --admin --ttl 2h)

# Schemathesis keeps a cache in its working directory: keep it under target/.
cd "$WORK"
status=0
for who in user admin; do
  if [[ $who == user ]]; then TOKEN=$USER_TOKEN; else TOKEN=$ADMIN_TOKEN; fi
  echo "=== schemathesis as $who against $BASE/api/v1/openapi.json ==="
  "$VENV/bin/schemathesis" run "$BASE/api/v1/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --seed 42 \
    --report junit --report-dir "$WORK/report-$who" \
    "$@" || status=$?
done

echo "service 5xx lines in its log: $(grep -c '"status":5' "$WORK/service.log" || true)"
exit $status
