#!/usr/bin/env python3
"""Reports a signup, a purchase and a refund to reftrack's ingest, as a product's backend
would: server to server, with the events API key, retrying on 503 and network errors with
the same event_id (reftrack counts each event_id once, so a retry is always safe).

Python 3.8+, standard library only. Usage:

    INGEST_URL=http://127.0.0.1:8080 REFTRACK_EVENTS_KEY=sk_live_... \
        python3 examples/report_conversions.py CODE_OR_CLICK_ID USER_ID

The first argument is the referral code, or the click id the landing URL carried
(`rt_click=CODE.CLICK_ID`) when the product's site is on another domain.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

INGEST_URL = os.environ.get("INGEST_URL", "http://127.0.0.1:8080")
API_KEY = os.environ["REFTRACK_EVENTS_KEY"]


def report(event, attempts=6):
    """POSTs one conversion; returns the accepted envelope. Raises on a 4xx (a bug in the
    event: fix it, do not retry) or when every attempt failed."""
    body = json.dumps(event).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(
            INGEST_URL + "/v1/conversions",
            data=body,
            method="POST",
            headers={"Authorization": "Bearer " + API_KEY, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise RuntimeError(f"{event['event_id']}: {error.code} {error.read().decode()}")
            wait = int(error.headers.get("Retry-After", "1"))
        except (urllib.error.URLError, TimeoutError):
            wait = 2**attempt
        time.sleep(wait)
    raise RuntimeError(f"{event['event_id']}: not accepted after {attempts} attempts")


def attribution(code_or_click_id):
    """A click id has a dot (`CODE.CLICK_ID`); a referral code has none."""
    key = "click_id" if "." in code_or_click_id else "referral_code"
    return {key: code_or_click_id}


def main():
    code, user = sys.argv[1], int(sys.argv[2])
    who = {"user_id": user, **attribution(code)}
    order = f"order-{user}-1"
    for event in [
        {"event_id": f"signup-{user}", "type": "signup", "email": f"user{user}@example.com", **who},
        {"event_id": order, "type": "purchase", "amount": "80.00", "currency": "USD", **who},
        {"event_id": f"refund-{user}-1", "type": "refund", "amount": "30.00", "currency": "USD",
         "original_event_id": order, **who},
    ]:
        answer = report(event)
        print(event["type"], answer["data"]["event_id"], answer["data"]["status"])


if __name__ == "__main__":
    main()
