"""The operator's commands, which talk HTTP to a running foreman: `status`, `jobs ...` (`jobs
watch` and `submit --wait` follow a job's event feed: `foreman/watch.py`) and `webhook verify`
(docs/contract.md section 7).

They talk HTTP to a running foreman (stdlib urllib: a CLI needs no event loop), print
plain text that reads well in a terminal and survives a pipe, or JSON with `--json`.
`--url`/`--token` default to FOREMAN_URL/FOREMAN_TOKEN (else the FOREMAN_LISTEN address).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from http.client import HTTPMessage
from typing import IO, Any
from urllib.parse import urlsplit

from foreman.watch import WatchRefused, WatchUnreachable, follow, watch
from foreman.webhooks import InvalidSignature, verify

# Exit statuses (docs/contract.md section 7). `status`: 0 healthy, 1 degraded, 2 unreachable;
# other commands: 1 when foreman refused the request or the input is bad, 2 for a usage error.
EXIT_OK = 0
EXIT_DEGRADED = 1
EXIT_UNREACHABLE = 2
EXIT_FAILED = 1
EXIT_USAGE = 2


class Unreachable(Exception):
    """foreman did not answer."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Redirects are followed as urllib follows them, but the token goes on only to the same
    origin (scheme, host, port): a redirect elsewhere, a proxy's login page or a hostile
    server, never receives it. (urllib copies every ordinary header onto a redirect.)"""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        token = req.unredirected_hdrs.get("Authorization")
        if new is not None and token and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", token)
        return new


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_TokenStaysHome)

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        if self.token:
            request.add_unredirected_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"foreman at {self.url} did not answer: {reason}") from None


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def default_url() -> str:
    if os.environ.get("FOREMAN_URL"):
        return os.environ["FOREMAN_URL"]
    host, _, port = (os.environ.get("FOREMAN_LISTEN") or "127.0.0.1:8080").rpartition(":")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host
    return f"http://{host}:{port}"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="foreman's base URL (default: $FOREMAN_URL)")
    common.add_argument("--token", default=None, help="bearer token (default: $FOREMAN_TOKEN)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")

    status = commands.add_parser("status", parents=[common], help="how foreman and its target are doing")
    status.set_defaults(run=cmd_status)

    jobs = commands.add_parser("jobs", help="the job API from the command line")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="newest jobs first")
    listing.add_argument("--state")
    listing.add_argument("--model")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=cmd_jobs_list)
    show = actions.add_parser("show", parents=[common], help="one job, whole")
    show.add_argument("job_id")
    show.add_argument("--wait", type=float, help="wait up to this many seconds for it to end")
    show.set_defaults(run=cmd_jobs_show)
    cancel = actions.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("job_id")
    cancel.set_defaults(run=cmd_jobs_cancel)
    submit = actions.add_parser("submit", parents=[common], help="submit a chat/generate payload from FILE (- = stdin)")
    submit.add_argument("file")
    submit.add_argument("--webhook", help="state_webhook_url for the job")
    submit.add_argument("--idempotency-key")
    submit.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=float("inf"),
        metavar="SECONDS",
        help="follow the job's events to its end (at most SECONDS) and print the finished job",
    )
    submit.set_defaults(run=cmd_jobs_submit)
    follow_one = actions.add_parser("watch", parents=[common], help="follow one job live until it ends")
    follow_one.add_argument("job_id")
    follow_one.set_defaults(run=cmd_jobs_watch)

    webhook = commands.add_parser("webhook", help="webhook tools")
    tools = webhook.add_subparsers(dest="action", required=True)
    verify = tools.add_parser("verify", help="check a saved delivery's signatures against the secret")
    verify.add_argument("file", help='a saved delivery: JSON {"headers": {...}, "body": "<raw body>"}')
    verify.add_argument("--secret", default=None, help="the webhook_secret (default: $FOREMAN_WEBHOOK_SECRET)")
    verify.add_argument(
        "--tolerance", type=float, default=None, help="also refuse a timestamp older than this many seconds"
    )
    verify.set_defaults(run=cmd_webhook_verify)


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except Unreachable as exc:
        print(f"foreman: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url or default_url(), args.token or os.environ.get("FOREMAN_TOKEN") or None)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# --- status -------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        status, health = client.call("GET", "/healthz")
        # 503 with a report: foreman is up but its database takes no writes (docs/adr/0026).
        if status not in (200, 503) or not isinstance(health, dict) or "status" not in health:
            raise Unreachable(f"{client.url}/healthz answered {status} without foreman's health report")
    except Unreachable as exc:
        if args.json:
            _print_json({"reachable": False, "url": client.url, "error": str(exc)})
        else:
            print(f"foreman {client.url}  UNREACHABLE  {exc}")
        return EXIT_UNREACHABLE
    ps_status, ps = _optional(client, "/api/ps")
    jobs_status, recent = _optional(client, "/jobs?limit=5")
    report = {
        "reachable": True,
        "url": client.url,
        "health": health,
        "resident": ps.get("models", []) if ps_status == 200 and isinstance(ps, dict) else None,
        "last_jobs": recent.get("jobs", []) if jobs_status == 200 and isinstance(recent, dict) else None,
    }
    if args.json:
        _print_json(report)
    else:
        print(render_status(report))
    storage_ok = (health.get("storage") or {}).get("ok", True)
    return EXIT_DEGRADED if health.get("degraded") or not storage_ok else EXIT_OK


def _optional(client: Client, path: str) -> tuple[int, Any]:
    """A detail of the report: foreman answered /healthz, so a slow detail is not an outage."""
    try:
        return client.call("GET", path)
    except Unreachable:
        return 0, None


def render_status(report: dict[str, Any]) -> str:
    health = report["health"]
    now = time.time()
    target = "unreachable (degraded)" if health.get("degraded") else "reachable"
    polled = _ago(health.get("last_poll_at"), now)
    storage = health.get("storage") or {"ok": True}
    verdict = "UNHEALTHY" if not storage.get("ok") else "DEGRADED" if health.get("degraded") else "ok"
    lines = [
        f"foreman {report['url']}  {verdict}",
        f"target     {health.get('target')}  {target}, last good poll {polled}",
    ]
    if not storage.get("ok"):
        lines.append(f"storage    refusing work: {storage.get('problem')}")
    if health.get("degraded") and health.get("last_error"):
        lines.append(f"           {health['last_error']}")
    resident = report.get("resident")
    if resident is None:
        lines.append("resident   (not available: /api/ps refused)")
    else:
        shown = [f"{m.get('model') or m.get('name')} ({_expiry(m.get('expires_at'), now)})" for m in resident]
        lines.append(f"resident   {', '.join(shown) or 'none'}")
    lines.append(f"installed  {health.get('installed_models', '?')} models")
    queue = health.get("queue") or {}
    by_model = health.get("queue_by_model") or {}
    models = ", ".join(f"{m} {n}" for m, n in by_model.items())
    lines.append(
        "queue      "
        + " · ".join(f"{state} {queue.get(state, 0)}" for state in ("queued", "loading", "working"))
        + (f"   by model: {models}" if models else "")
    )
    running = health.get("running")
    if running:
        lines.append(
            f"running    {running['job_id']}  {running['model']}  {running['state']}  {running['elapsed_s']:.1f}s"
        )
    else:
        lines.append("running    nothing")
    lines.append(
        f"swaps      {health.get('swaps', 0)} since start, resident worker model "
        f"{health.get('resident_model') or 'none'}"
    )
    reasons = health.get("swaps_by_reason") or {}
    share = health.get("loading_share")
    if reasons or share is not None:
        by_reason = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        loading = "n/a" if share is None else f"{share * 100:.1f}%"
        lines.append(f"           by reason: {by_reason or 'none'}; time spent loading {loading} of busy time")
    jobs = report.get("last_jobs")
    if jobs:
        for i, job in enumerate(jobs):
            label = "last jobs  " if i == 0 else "           "
            lines.append(f"{label}{job['job_id']}  {job['state']:<9} {job['model']:<24} {_ago(job['updated_at'], now)}")
    return "\n".join(lines)


def _parse_time(stamp: Any) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ago(stamp: Any, now: float) -> str:
    at = _parse_time(stamp)
    return "never" if at is None else f"{_span(now - at)} ago"


def _expiry(stamp: Any, now: float) -> str:
    at = _parse_time(stamp)
    if at is None:
        return "expiry unknown"
    if at - now > 100 * 365 * 86400:
        return "forever"
    return f"expires in {_span(at - now)}" if at > now else "expiring"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


# --- jobs ---------------------------------------------------------------------------------------


def cmd_jobs_list(args: argparse.Namespace) -> int:
    query = [f"limit={args.limit}"] + [f"{k}={v}" for k, v in (("state", args.state), ("model", args.model)) if v]
    status, body = _client(args).call("GET", "/jobs?" + "&".join(query))
    if status != 200:
        return _failed(status, body)
    if args.json:
        _print_json(body)
        return EXIT_OK
    now = time.time()
    for job in body["jobs"]:
        created = _ago(job["created_at"], now)
        print(f"{job['job_id']}  {job['state']:<9} {job['model']:<24} {job['endpoint']:<22} {created}")
    return EXIT_OK


def cmd_jobs_show(args: argparse.Namespace) -> int:
    suffix = f"?wait={args.wait}" if args.wait else ""
    status, body = _client(args).call("GET", f"/jobs/{args.job_id}{suffix}")
    if status != 200:
        return _failed(status, body)
    _print_json(body)
    return EXIT_OK


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    status, body = _client(args).call("DELETE", f"/jobs/{args.job_id}")
    if status != 200:
        return _failed(status, body)
    if args.json:
        _print_json(body)
    else:
        print(f"{body['job_id']}  {body['state']}")
    return EXIT_OK


def cmd_jobs_submit(args: argparse.Namespace) -> int:
    if args.file == "-":
        raw = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as fh:
            raw = fh.read()
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        print(f"foreman: {args.file} is not JSON: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.webhook:
        payload["state_webhook_url"] = args.webhook
    headers = {"Content-Type": "application/json"}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    client = _client(args)
    status, body = client.call("POST", "/jobs", json.dumps(payload).encode(), headers)
    if status != 202:
        return _failed(status, body)
    if args.wait:
        job_id = body["job_id"]
        deadline = None if args.wait == float("inf") else time.monotonic() + args.wait
        try:
            for _ in follow(client.url, client.token, job_id, deadline):
                pass
        except TimeoutError:
            pass
        except (WatchRefused, WatchUnreachable) as exc:
            print(f"foreman: {exc}", file=sys.stderr)
            return EXIT_FAILED
        status, body = client.call("GET", f"/jobs/{job_id}")
        if status != 200:
            return _failed(status, body)
        _print_json(body)
        return EXIT_OK if body.get("state") == "done" else EXIT_FAILED
    elif args.json:
        _print_json(body)
    else:
        print(body["job_id"])
    return EXIT_OK


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    """Exit 0 when the job ends done, 1 when it ends failed or cancelled (or foreman refuses)."""
    client = _client(args)
    try:
        state = watch(client.url, client.token, args.job_id, json_lines=args.json)
    except WatchRefused as exc:
        return _failed(exc.status, {"error": exc.error})
    except WatchUnreachable as exc:
        raise Unreachable(str(exc)) from None
    except KeyboardInterrupt:
        return 130
    return EXIT_OK if state == "done" else EXIT_FAILED


def _failed(status: int, body: Any) -> int:
    error = body.get("error") if isinstance(body, dict) else body
    print(f"foreman: {status} {error}", file=sys.stderr)
    return EXIT_FAILED


# --- webhook verify -----------------------------------------------------------------------------


def cmd_webhook_verify(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("FOREMAN_WEBHOOK_SECRET")
    if not secret:
        print("foreman: no secret (--secret or FOREMAN_WEBHOOK_SECRET)", file=sys.stderr)
        return EXIT_USAGE
    with open(args.file, encoding="utf-8") as fh:
        saved = json.load(fh)
    headers = {k.lower(): str(v) for k, v in (saved.get("headers") or {}).items()}
    body = saved.get("body", "")
    raw = body.encode() if isinstance(body, str) else json.dumps(body, separators=(",", ":")).encode()
    try:
        verify(raw, headers, secret, tolerance=args.tolerance)  # what receivers run (foreman.webhooks)
    except InvalidSignature as exc:
        for problem in exc.problems:
            print(f"INVALID  {problem}")
        return EXIT_FAILED
    print(f"valid    webhook-id {headers.get('webhook-id')}")
    return EXIT_OK
