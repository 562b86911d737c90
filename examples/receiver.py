# A minimal receiver for the README walk-through: verifies X-Webhook-Signature as the guide does.
# Run: python3 examples/receiver.py   (listens on 127.0.0.1:3000)
import hmac, hashlib, os
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ.get("WEBHOOK_SECRET", "your_webhook_secret")

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, self.headers.get("X-Webhook-Signature", ""))
        print(("verified " if ok else "BAD SIGNATURE ") + body.decode(), flush=True)
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK")

HTTPServer(("127.0.0.1", 3000), Handler).serve_forever()
