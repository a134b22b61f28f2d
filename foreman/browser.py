"""The browser boundary, drawn where Ollama draws it (docs/wire.md section 0, docs/adr/0024).

Two checks, in Ollama's order: gin-contrib/cors (v1.7.2, as Ollama configures it in
`GenerateRoutes`), then `allowedHostsMiddleware` (`server/routes.go`):

1. A request whose `Origin` is set and is not its own `http(s)://<Host>` is a CORS request.
   An origin outside Ollama's defaults plus `origins` is refused: `403`, empty. An allowed
   `OPTIONS` is a preflight: `204` with the Access-Control-Allow-* headers, nothing else
   runs. Any other allowed one goes on, and its answer carries `Access-Control-Allow-Origin`.
2. Only when foreman listens on a loopback address: a `Host` that is not a loopback, private
   or unspecified IP, an address of this machine, `localhost`, the hostname, or under
   `.localhost`, `.local`, `.internal` is refused, `403`, empty (a DNS-rebinding page has a
   public name in its Host). A host that passes by name answers an `OPTIONS` itself: `204`.

Pure functions; the application applies `Boundary.judge` before any handler is chosen
(`foreman/app.py`). Nothing here knows Tornado.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# envconfig.AllowedOrigins: what OLLAMA_ORIGINS adds to (after it, in this order).
DEFAULT_ORIGINS: tuple[str, ...] = (
    *(
        origin
        for host in ("localhost", "127.0.0.1", "0.0.0.0")
        for origin in (f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*")
    ),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)
# cors.DefaultConfig().AllowMethods and GenerateRoutes' AllowHeaders, as gin-contrib/cors sends
# them: lower-cased, then in Go's canonical header form, joined by commas.
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "User-Agent",
    "Accept",
    "X-Requested-With",
    "OpenAI-Beta",
    "x-stainless-arch",
    "x-stainless-async",
    "x-stainless-custom-poll-interval",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-poll-helper",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
ALLOW_HEADERS = ",".join("-".join(part.capitalize() for part in name.lower().split("-")) for name in _ALLOW_HEADERS)
MAX_AGE = str(12 * 3600)  # cors.DefaultConfig().MaxAge
# The schemes an origin without "*" must start with (Config.Validate, AllowBrowserExtensions on).
_SCHEMES = (
    "http://",
    "https://",
    "chrome-extension://",
    "safari-extension://",
    "moz-extension://",
    "ms-browser-extension://",
)
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
# netip.Addr.IsPrivate (RFC 1918 and RFC 4193); Python's is_private is much wider.
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def parse_origins(value: Any) -> tuple[str, ...]:
    """The `origins` setting: a list, or a comma-separated string as OLLAMA_ORIGINS is.

    Refused as gin-contrib/cors would refuse them at Ollama's start: more than one `*`, or no
    `*` and none of the schemes it knows. Surrounding quotes go, as Ollama's `Var` drops them.
    """
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        items: Iterable[Any] = value
    else:
        items = str(value).strip().strip("\"'").split(",")
    origins = tuple(str(item).strip() for item in items if str(item).strip())
    for origin in origins:
        if origin.count("*") > 1:
            raise ValueError(f"{origin!r}: only one * is allowed")
        if "*" not in origin and not origin.startswith(_SCHEMES):
            raise ValueError(f"{origin!r}: an origin must contain '*' or begin with {', '.join(_SCHEMES)}")
    return origins


class Origins:
    """Allowed browser origins, matched as gin-contrib/cors matches them."""

    def __init__(self, extra: Sequence[str] = ()) -> None:
        listed = (*extra, *DEFAULT_ORIGINS)
        self.allow_all = "*" in listed
        self._exact = frozenset(origin.strip().lower() for origin in listed)
        self._wildcards = tuple(origin.split("*", 1) for origin in listed if "*" in origin)

    def allows(self, origin: str) -> bool:
        # The request's origin is compared as sent (a browser sends it lower-case).
        if self.allow_all or origin in self._exact:
            return True
        return any(origin.startswith(prefix) and origin.endswith(suffix) for prefix, suffix in self._wildcards)


def origin_allowed(origin: str, extra: Sequence[str] = ()) -> bool:
    """Whether a browser page at `origin` may call foreman (Ollama's defaults plus `extra`)."""
    return Origins(extra).allows(origin)


def _address(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # netip unmaps ::ffff:a.b.c.d before judging it
    return ip


def listens_on_loopback(listen_host: str) -> bool:
    """Whether the Host check applies: foreman is bound to a loopback address (or to a name,
    as Ollama checks whenever its listener's address does not parse as an IP)."""
    if listen_host in ("", "*"):
        return False  # every address: no loopback listener
    ip = _address(listen_host.strip("[]"))
    return ip is None or ip.is_loopback


def is_local_address(ip: IPAddress) -> bool:
    """An address of one of this machine's interfaces: the kernel lets a socket bind to it.

    (Ollama lists the interfaces; the standard library cannot, and a bind asks the same question.)
    """
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def _split_host(hostport: str) -> str:
    """The host of `host:port` as Go's net.SplitHostPort reads it; the whole value when that
    fails (no port, too many colons, stray brackets), as Ollama then falls back to it."""
    last = hostport.rfind(":")
    if last < 0:
        return hostport
    start = end = 0
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or close + 1 != last:
            return hostport
        host, start, end = hostport[1:close], 1, close + 1
    else:
        host = hostport[:last]
        if ":" in host:
            return hostport
    if "[" in hostport[start:] or "]" in hostport[end:]:
        return hostport
    return host


def _host_passes(host: str) -> str | None:
    """ "ip" or "name" (how `host` passed the Host check), or None when it is refused."""
    name = _split_host(host)
    ip = _address(name)
    if ip is not None:
        if ip.is_loopback or ip.is_unspecified or any(ip in net for net in _PRIVATE) or is_local_address(ip):
            return "ip"
        return None
    name = name.lower()
    if name in ("", "localhost", socket.gethostname().lower()) or name.endswith(_LOCAL_SUFFIXES):
        return "name"
    return None


def host_allowed(host: str, listen_host: str) -> bool:
    """Whether a request with this `Host` header passes Ollama's DNS-rebinding guard when
    foreman listens on `listen_host` (the guard applies only on loopback)."""
    return not listens_on_loopback(listen_host) or _host_passes(host) is not None


def answer_headers(origins: Origins, host: str, origin: str) -> tuple[tuple[str, str], ...]:
    """What the answer to an allowed cross-origin request carries (cors `handleNormal`)."""
    if not _is_cors(host, origin) or not origins.allows(origin):
        return ()
    if origins.allow_all:
        return (("Access-Control-Allow-Origin", "*"),)
    return (("Vary", "Origin"), ("Access-Control-Allow-Origin", origin))


def preflight_headers(origins: Origins, origin: str) -> tuple[tuple[str, str], ...]:
    """The answer to a preflight from an allowed origin (cors `handlePreflight`), in Go's order."""
    allow_origin = "*" if origins.allow_all else origin
    vary = () if origins.allow_all else ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")
    return (
        ("Access-Control-Allow-Headers", ALLOW_HEADERS),
        ("Access-Control-Allow-Methods", ALLOW_METHODS),
        ("Access-Control-Allow-Origin", allow_origin),
        ("Access-Control-Max-Age", MAX_AGE),
        *(("Vary", value) for value in vary),
    )


def _is_cors(host: str, origin: str) -> bool:
    """An Origin that is not the request's own (gin-contrib/cors: `fetch` from the same page sends one)."""
    return bool(origin) and origin not in (f"http://{host}", f"https://{host}")


@dataclass(frozen=True)
class Verdict:
    """What the boundary makes of a request: `status` None lets it go on to its handler;
    otherwise it is answered at once with `status`, `headers` and no body."""

    status: int | None
    headers: tuple[tuple[str, str], ...] = ()


PASS = Verdict(None)
REFUSED = Verdict(403)


class Boundary:
    """The two checks for one daemon: its allowed origins and the address it listens on."""

    def __init__(self, extra_origins: Sequence[str], listen_host: str) -> None:
        self.origins = Origins(extra_origins)
        self.loopback = listens_on_loopback(listen_host)

    def judge(self, method: str, host: str, origin: str) -> Verdict:
        headers: tuple[tuple[str, str], ...] = ()
        if _is_cors(host, origin):
            if not self.origins.allows(origin):
                return REFUSED
            if method == "OPTIONS":
                return Verdict(204, preflight_headers(self.origins, origin))
            headers = answer_headers(self.origins, host, origin)
        if self.loopback:
            passed = _host_passes(host)
            if passed is None:
                return Verdict(403, headers)
            if passed == "name" and method == "OPTIONS":
                return Verdict(204, headers)
        return PASS

    def answer_headers(self, host: str, origin: str) -> tuple[tuple[str, str], ...]:
        return answer_headers(self.origins, host, origin)
