#!/usr/bin/env bash
# The conversions API with curl: a signup, a purchase and a refund of part of it, reported
# server to server. Usage: INGEST_URL=... REFTRACK_EVENTS_KEY=... report_conversions.sh CODE USER_ID
# A 503 means the broker did not take it yet: send the same body again (same event_id).
set -euo pipefail
INGEST_URL="${INGEST_URL:-http://127.0.0.1:8080}" CODE="$1" USER_ID="$2"
report() {
  curl -sS --fail-with-body --retry 5 "$INGEST_URL/v1/conversions" \
    -H "Authorization: Bearer $REFTRACK_EVENTS_KEY" -H 'Content-Type: application/json' -d "$1"
  echo
}
report '{"event_id":"signup-'"$USER_ID"'","type":"signup","user_id":'"$USER_ID"',"referral_code":"'"$CODE"'"}'
report '{"event_id":"order-'"$USER_ID"'-1","type":"purchase","user_id":'"$USER_ID"',"referral_code":"'"$CODE"'","amount":"80.00","currency":"USD"}'
report '{"event_id":"refund-'"$USER_ID"'-1","type":"refund","user_id":'"$USER_ID"',"referral_code":"'"$CODE"'","amount":"30.00","currency":"USD","original_event_id":"order-'"$USER_ID"'-1"}'
