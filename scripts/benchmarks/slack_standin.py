"""A small Slack Web API stand-in for the fan-out benchmark, run as its own process:

    python3 slack_standin.py --port PORT --token xoxb-... --channels C01,C02 [--log FILE]

It speaks the part of Slack's Web API that vigilo's notifier uses: POST /api/chat.postMessage
and /api/chat.update, with a JSON (or form-encoded) body and `Authorization: Bearer TOKEN`.
Answers are Slack's: `{"ok": true, "channel": …, "ts": …}`; `{"ok": false, "error":
"not_authed"}` without a token and `"invalid_auth"` for a wrong one; `"channel_not_found"` for a
channel it was not told about; `"message_not_found"` for an update of an unknown message.

Rate limit: at most one chat.postMessage per second per channel, with no burst allowance. A
post arriving less than 1 s after the last accepted post in its channel gets HTTP 429 with a
`Retry-After` header (whole seconds, at least 1, rounded up) and is not counted. chat.update
is Tier 3 in Slack and is not limited here.

Every accepted call is appended (one JSON object a line: method, channel, ts, arrival time as
Unix seconds, text and the `approval N` named in the blocks) to --log, if given, and kept in
memory: GET /stats answers the counts (accepted, rate-limited, refused, duplicates, per channel,
first and last accepted time) and GET /posts every accepted call. A duplicate is an accepted
chat.postMessage whose text, or whose approval id, was already posted.
"""

import argparse
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

APPROVAL_RE = re.compile(r"\bapproval (\d+)\b")


class State:
    """What the stand-in has seen; one lock for all of it."""

    def __init__(self, token, channels, log_path, interval):
        self.token = token
        self.channels = set(channels)
        self.interval = interval
        self.lock = threading.Lock()
        self.last = {}  # channel -> monotonic time of the last accepted post
        self.posts = []  # accepted calls
        self.texts = set()
        self.approvals = set()
        self.counts = {"accepted": 0, "updates": 0, "rate_limited": 0, "refused": 0,
                       "duplicates": 0}
        self.seq = 0
        self.log = open(log_path, "a", buffering=1) if log_path else None

    def next_ts(self, now):
        self.seq += 1
        return f"{int(now)}.{self.seq:06d}"


def approval_of(body):
    """The approval id vigilo names in a request's blocks (`approval N · remediation`)."""
    found = APPROVAL_RE.search(json.dumps(body.get("blocks") or []))
    return int(found.group(1)) if found else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Slack; every answer has a Content-Length
    # Headers and body go out in two writes; with Nagle's algorithm the body waits for the
    # client's delayed ACK (about 40 ms a request on Linux), a delay Slack does not have.
    disable_nagle_algorithm = True
    state: State = None

    def log_message(self, *args):  # quiet
        pass

    def answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        st = self.state
        with st.lock:
            if self.path == "/stats":
                by_channel = {}
                for p in st.posts:
                    if p["method"] == "chat.postMessage":
                        by_channel[p["channel"]] = by_channel.get(p["channel"], 0) + 1
                posted = [p["at"] for p in st.posts if p["method"] == "chat.postMessage"]
                body = {**st.counts, "by_channel": by_channel,
                        "first": min(posted) if posted else None,
                        "last": max(posted) if posted else None}
            elif self.path == "/posts":
                body = list(st.posts)
            else:
                return self.answer(404, {"ok": False, "error": "not_found"})
        self.answer(200, body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        arrived, mono = time.time(), time.monotonic()
        st = self.state
        method = self.path.rsplit("/", 1)[-1] if self.path.startswith("/api/") else None
        ctype = self.headers.get("Content-Type", "")
        try:
            if "json" in ctype:
                body = json.loads(raw or b"{}")
            else:
                body = dict(parse_qsl(raw.decode()))
        except ValueError:
            return self.answer(200, {"ok": False, "error": "invalid_json"})
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else body.get("token")
        if method not in ("chat.postMessage", "chat.update"):
            return self.answer(404, {"ok": False, "error": "unknown_method"})
        if not token:
            with st.lock:
                st.counts["refused"] += 1
            return self.answer(200, {"ok": False, "error": "not_authed"})
        if token != st.token:
            with st.lock:
                st.counts["refused"] += 1
            return self.answer(200, {"ok": False, "error": "invalid_auth"})
        channel = body.get("channel")
        if channel not in st.channels:
            with st.lock:
                st.counts["refused"] += 1
            return self.answer(200, {"ok": False, "error": "channel_not_found"})
        text = body.get("text") or ""
        with st.lock:
            if method == "chat.update":
                known = any(p["ts"] == body.get("ts") and p["channel"] == channel for p in st.posts)
                if not known:
                    st.counts["refused"] += 1
                    return self.answer(200, {"ok": False, "error": "message_not_found"})
                ts = body["ts"]
                st.counts["updates"] += 1
            else:
                last = st.last.get(channel)
                if last is not None and mono - last < st.interval:
                    st.counts["rate_limited"] += 1
                    retry = max(1, math.ceil(st.interval - (mono - last)))
                    return self.answer(429, {"ok": False, "error": "ratelimited"},
                                       {"Retry-After": str(retry)})
                st.last[channel] = mono
                ts = st.next_ts(arrived)
                approval = approval_of(body)
                if text in st.texts or (approval is not None and approval in st.approvals):
                    st.counts["duplicates"] += 1
                st.texts.add(text)
                if approval is not None:
                    st.approvals.add(approval)
                st.counts["accepted"] += 1
            post = {"method": method, "channel": channel, "ts": ts, "at": arrived,
                    "text": text, "approval": approval_of(body)}
            st.posts.append(post)
            if st.log:
                st.log.write(json.dumps(post) + "\n")
        self.answer(200, {"ok": True, "channel": channel, "ts": ts,
                          "message": {"text": text, "ts": ts}})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--channels", required=True, help="comma-separated channel ids")
    p.add_argument("--log", help="append every accepted call here (JSON lines)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between posts to a channel")
    args = p.parse_args()
    Handler.state = State(args.token, args.channels.split(","), args.log, args.interval)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"slack stand-in on http://127.0.0.1:{args.port}/api", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
