"""A webhook receiver for reftrack's tests, independent of reftrack's code: it checks each
delivery's signature with the Standard Webhooks reference library (PyPI `standardwebhooks`)
and logs what it got, one JSON line per request.

    python webhook_receiver.py LOG PLAN SECRET [SECRET ...]

Prints its port on the first line of stdout. PLAN is a file holding how to answer the next
requests, comma-separated: a status code (`500`), or `timeout` (answer after 3 s). The first
one is used up by a request, unless it ends with `*` (then it stays). Empty or missing: 200.
Each log line: {"id", "timestamp", "type", "data", "verified_by": [indexes of the secrets
that verify it], "answered"}.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

LOG, PLAN, SECRETS = sys.argv[1], sys.argv[2], sys.argv[3:]
lock = threading.Lock()


def next_answer():
    with lock:
        try:
            with open(PLAN) as f:
                plan = [p.strip() for p in f.read().split(",") if p.strip()]
        except FileNotFoundError:
            plan = []
        if not plan:
            return "200"
        first = plan[0]
        if first.endswith("*"):
            return first[:-1]
        with open(PLAN, "w") as f:
            f.write(",".join(plan[1:]))
        return first


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified_by = []
        for i, secret in enumerate(SECRETS):
            try:
                Webhook(secret).verify(body, headers)
                verified_by.append(i)
            except Exception:
                pass
        answer = next_answer()
        message = json.loads(body)
        with lock, open(LOG, "a") as log:
            log.write(json.dumps({
                "id": headers.get("webhook-id"),
                "timestamp": headers.get("webhook-timestamp"),
                "type": message.get("type"),
                "data": message.get("data"),
                "verified_by": verified_by,
                "answered": answer,
            }) + "\n")
        if answer == "timeout":
            time.sleep(3)
        try:
            self.send_response(200 if answer == "timeout" else int(answer))
            self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
