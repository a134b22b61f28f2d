"""Which of Ollama's requests run a model: the one table foreman routes by (docs/adr/0027).

Every path Ollama serves is in `OLLAMA_ROUTES` with what foreman does with it:

- `JOB`: it runs a model, so it is a queued job, serialized with every other generation;
- `EMBEDDING`: it runs an embedding model: straight to the target, never queued (ADR 0013);
- `MANAGEMENT`: it changes the target's models: passed only with `allow_model_management`;
- `PASS_THROUGH`: anything else: passed to the target unqueued, as it came.

A path that is not in the table is passed through, so an endpoint a new Ollama adds works
through foreman the day it ships; if it runs a model, it belongs here as a `JOB` (read
docs/wire.md section 10.8 against the new release's `server/routes.go`). Some pass-through
paths get an answer of foreman's own making on top (`/api/tags` from the poller, `/api/ps`
and `/api/version` falling back to the last known answer): `foreman/app.py` routes those.
"""

from __future__ import annotations

import re
from enum import Enum


class Route(Enum):
    JOB = "job"
    EMBEDDING = "embedding"
    MANAGEMENT = "management"
    PASS_THROUGH = "pass through"


# Path patterns as Ollama's router writes them (`:name` is one path segment, `*` the rest).
# docs/wire.md section 10.8 lists the routes of Ollama v0.33's `server/routes.go`.
OLLAMA_ROUTES: dict[str, Route] = {
    "/api/chat": Route.JOB,
    "/api/generate": Route.JOB,
    "/v1/chat/completions": Route.JOB,
    "/v1/completions": Route.JOB,
    "/v1/messages": Route.JOB,
    "/v1/responses": Route.JOB,
    "/v1/audio/transcriptions": Route.JOB,
    "/api/embed": Route.EMBEDDING,
    "/api/embeddings": Route.EMBEDDING,
    "/v1/embeddings": Route.EMBEDDING,
    "/api/pull": Route.MANAGEMENT,
    "/api/push": Route.MANAGEMENT,
    "/api/create": Route.MANAGEMENT,
    "/api/copy": Route.MANAGEMENT,
    "/api/delete": Route.MANAGEMENT,
    "/api/blobs/:digest": Route.MANAGEMENT,
    "/": Route.PASS_THROUGH,
    "/api/version": Route.PASS_THROUGH,
    "/api/status": Route.PASS_THROUGH,
    "/api/tags": Route.PASS_THROUGH,
    "/api/ps": Route.PASS_THROUGH,
    "/api/show": Route.PASS_THROUGH,
    "/api/me": Route.PASS_THROUGH,
    "/api/signout": Route.PASS_THROUGH,
    "/api/user/keys/:encodedKey": Route.PASS_THROUGH,
    "/api/experimental/*": Route.PASS_THROUGH,
    "/v1/models": Route.PASS_THROUGH,
    "/v1/models/:model": Route.PASS_THROUGH,
}


def tornado_pattern(path: str) -> str:
    """An Ollama route pattern as a Tornado URL regex (`:name` captures one segment)."""
    out = re.escape(path).replace(r"\*", ".*")
    return re.sub(r":\w+", "([^/]+)", out)


def classify(path: str) -> Route:
    """What foreman does with a request for `path` (unknown: pass through)."""
    for pattern, route in OLLAMA_ROUTES.items():
        if re.fullmatch(tornado_pattern(pattern), path):
            return route
    return Route.PASS_THROUGH


def paths(route: Route) -> list[str]:
    return [path for path, kind in OLLAMA_ROUTES.items() if kind is route]
