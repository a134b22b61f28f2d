"""Packaging: the Dockerfile and docs/openapi.yaml, each checked against the real thing.

No Docker engine is needed: the Dockerfile is parsed, and every command it runs is run here
(its COPY set through .dockerignore, its `pip install`, its HEALTHCHECK, its CMD with its ENV).
The OpenAPI document is checked against what a live foreman answers, with a small validator
for the subset of JSON Schema the document uses (it refuses any keyword it does not know, so
the document cannot drift into schemas that are silently not checked).
"""

from __future__ import annotations

import asyncio
import configparser
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from foreman.server import Daemon
from foreman.simulator import Fault, Simulator
from tests.conftest import ROOT, Receiver, StartForeman, free_port

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SPEC = ROOT / "docs" / "openapi.yaml"
HELLO = [{"role": "user", "content": "hello there"}]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# --- the Dockerfile, parsed ------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    """Instructions in order: continuation lines joined, comments dropped (as Docker reads them)."""
    result: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return result


def args_of(keyword: str) -> list[str]:
    return [i.args for i in dockerfile() if i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list; the shell form is refused."""
    argv = json.loads(args)
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv), args
    return argv


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in args_of("ENV"):
        words = shlex.split(args)
        if "=" not in words[0]:  # the legacy `ENV KEY value` form
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def healthcheck_argv() -> list[str]:
    (args,) = args_of("HEALTHCHECK")
    match = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(.+)", args)
    assert match, f"HEALTHCHECK is not `[--options] CMD [...]`: {args}"
    return exec_form(match.group(2))


def pip_install_argv() -> list[str]:
    """The `pip install ...` command of the one RUN, as its words."""
    (run,) = args_of("RUN")
    commands = [shlex.split(part) for part in run.split("&&")]
    found = [c for c in commands if c[:2] == ["pip", "install"] or c[:4] == ["python", "-m", "pip", "install"]]
    assert len(found) == 1, f"expected one pip install in RUN, got {found}"
    return found[0]


def positional(argv: list[str]) -> list[str]:
    return [a for a in argv[argv.index("install") + 1 :] if not a.startswith("-")]


# --- .dockerignore, matched as Docker matches it -------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(os.path.normpath(line.lstrip("!")).lstrip("/"))))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """A path is out of the context if it, or a directory above it, matches (last rule wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = not negate
    return verdict


# --- a tiny JSON Schema validator (the subset docs/openapi.yaml uses) ---------------------------

_CHECKED = {"$ref", "type", "properties", "required", "enum", "items", "additionalProperties"}
_CHECKED |= {"anyOf", "oneOf", "pattern", "minimum", "maximum"}
_ANNOTATIONS = {"description", "title", "format", "default", "example", "examples", "deprecated"}
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s (local ones, `#/...`) to the node they name."""
    while "$ref" in node and len(node) == 1:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def errors(instance: Any, schema: dict[str, Any], spec: dict[str, Any], where: str = "$") -> list[str]:
    unknown = set(schema) - _CHECKED - _ANNOTATIONS
    assert not unknown, f"{where}: the test validator does not know {sorted(unknown)}"
    found: list[str] = []
    if "$ref" in schema:
        found += errors(instance, resolve(spec, {"$ref": schema["$ref"]}), spec, where)
    if "anyOf" in schema and not any(not errors(instance, s, spec, where) for s in schema["anyOf"]):
        found.append(f"{where}: matches none of anyOf")
    if "oneOf" in schema:
        matching = sum(not errors(instance, s, spec, where) for s in schema["oneOf"])
        if matching != 1:
            found.append(f"{where}: matches {matching} of oneOf, not exactly one")
    if "type" in schema:
        types = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(_TYPES[t](instance) for t in types):
            return [*found, f"{where}: {instance!r:.80} is not of type {types}"]
    if "enum" in schema and not any(type(instance) is type(e) and instance == e for e in schema["enum"]):
        found.append(f"{where}: {instance!r:.80} not in {schema['enum']}")
    if isinstance(instance, str) and "pattern" in schema and not re.search(schema["pattern"], instance):
        found.append(f"{where}: {instance!r} does not match {schema['pattern']}")
    if _TYPES["number"](instance):
        if "minimum" in schema and instance < schema["minimum"]:
            found.append(f"{where}: {instance} < {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            found.append(f"{where}: {instance} > {schema['maximum']}")
    if isinstance(instance, dict):
        found += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in instance]
        properties = schema.get("properties", {})
        for key, value in instance.items():
            if key in properties:
                found += errors(value, properties[key], spec, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{where}: unexpected {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += errors(value, schema["additionalProperties"], spec, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for n, item in enumerate(instance):
            found += errors(item, schema["items"], spec, f"{where}[{n}]")
    return found


def assert_valid(instance: Any, schema: dict[str, Any], spec: dict[str, Any]) -> None:
    problems = errors(instance, schema, spec)
    assert not problems, "\n".join(problems) + "\n" + json.dumps(instance)[:2000]


def load_spec() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert isinstance(spec, dict)
    return spec


def schema_of(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def walk_schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in the document (under components.schemas and every `schema:`)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield from _sub_schemas(value)
            elif key == "schemas" and isinstance(value, dict):
                for schema in value.values():
                    yield from _sub_schemas(schema)
            else:
                yield from walk_schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_schemas(item)


def _sub_schemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for value in schema.get("properties", {}).values():
        yield from _sub_schemas(value)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _sub_schemas(schema[key])
    for key in ("anyOf", "oneOf"):
        for value in schema.get(key, []):
            yield from _sub_schemas(value)


def template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def operation(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    paths = {template(p): item for p, item in spec["paths"].items()}
    return dict(paths[template(path)][method])


async def expect(
    resp: aiohttp.ClientResponse, spec: dict[str, Any], path: str, method: str, status: int | None = None
) -> Any:
    """Check an answer against the spec: its status is declared, its content type is one the
    operation declares for that status, and a JSON body validates against that schema."""
    body = await resp.read()
    if status is not None:
        assert resp.status == status, body
    declared = operation(spec, path, method)["responses"]
    assert str(resp.status) in declared, f"{method.upper()} {path} answered {resp.status}, not in the spec"
    response = resolve(spec, declared[str(resp.status)])
    media = resp.headers.get("Content-Type", "").split(";")[0].strip()
    content = {k.split(";")[0].strip(): v for k, v in response.get("content", {}).items()}
    assert media in content, f"{method.upper()} {path} {resp.status}: {media} not declared ({list(content)})"
    if media != "application/json":
        return body
    value = json.loads(body)
    assert_valid(value, content[media]["schema"], spec)
    return value


# --- the image: what the Dockerfile says ---------------------------------------------------------


def test_the_dockerfile_is_small_non_root_and_keeps_its_data_in_a_volume() -> None:
    steps = dockerfile()
    assert steps[0] == Instruction("FROM", "python:3.11-slim")
    assert len(args_of("RUN")) == 1, "one install layer"
    argv = pip_install_argv()
    assert positional(argv) == ["."] and "--no-cache-dir" in argv
    assert not {"-e", "--editable"} & set(argv), "the image installs a regular (not editable) copy"

    users = args_of("USER")
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    (run,) = args_of("RUN")
    assert re.search(rf"\buseradd\b[^&]*\s{re.escape(user)}(\s|$)", run), f"USER {user} is not created in the RUN"
    keywords = [s.keyword for s in steps]
    assert keywords.index("USER") > keywords.index("RUN") and keywords.index("USER") < keywords.index("CMD")

    volumes = [v for args in args_of("VOLUME") for v in (json.loads(args) if args.startswith("[") else args.split())]
    assert "/data" in volumes
    env = image_env()
    assert env["FOREMAN_DB_PATH"] == "/data/foreman.db"
    assert env["FOREMAN_LISTEN"] == "0.0.0.0:8080"
    assert args_of("EXPOSE") == [env["FOREMAN_LISTEN"].rpartition(":")[2]]
    # Required, without a default: set at `docker run`, documented in a comment.
    assert "FOREMAN_OLLAMA_URL" not in env
    text = DOCKERFILE.read_text(encoding="utf-8")
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert re.search(r"docker run\b.*(\n#.*)*FOREMAN_OLLAMA_URL=", comments), "document `docker run -e FOREMAN_...`"

    assert exec_form(args_of("CMD")[-1]) == ["foreman", "serve"]
    argv = healthcheck_argv()
    assert argv[0] == "python" and not re.search(r"\b(curl|wget)\b", args_of("HEALTHCHECK")[0])
    assert "FOREMAN_LISTEN" in argv[-1] and "/healthz" in argv[-1]


def test_dockerignore_keeps_venvs_git_caches_and_databases_out_but_not_what_is_copied() -> None:
    rules = dockerignore()
    for path in (
        ".venv/bin/python",
        ".ci-venv/lib/site.py",
        ".git/HEAD",
        "foreman.db",
        "foreman.db-wal",
        "data/foreman.db",
        "foreman.db.lock",
        "foreman/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/foreman/cli.data.json",
        ".ruff_cache/content",
        "foreman_ollama.egg-info/PKG-INFO",
        "build/lib/foreman/cli.py",
    ):
        assert ignored(path, rules), f"{path} would be sent to the Docker build context"
    for copied in copied_sources():
        for file in [copied] if copied.is_file() else copied.rglob("*.py"):
            rel = file.relative_to(ROOT).as_posix()
            assert not ignored(rel, rules), f"{rel} is COPYed by the Dockerfile but excluded by .dockerignore"


def copied_sources() -> list[Path]:
    sources = []
    for args in args_of("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources += [ROOT / w for w in words[:-1]]
    for source in sources:
        assert source.exists(), f"COPY {source.relative_to(ROOT)}: no such file"
    return sources


# --- the image: what the Dockerfile runs, run here -----------------------------------------------


def _can_build_offline() -> bool:
    """setuptools builds wheels by itself from 70.1 on; before, it needs `wheel`."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    from importlib.metadata import version

    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in version("setuptools").split("."))
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's build, minus Docker: its COPY set (through .dockerignore) into a fresh
    context, then its own `pip install` line there, into a target directory (without the
    dependencies, which the test venv already has)."""
    rules = dockerignore()
    context = tmp_path_factory.mktemp("context")
    for args in args_of("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        *sources, dest = words
        assert not dest.startswith("/"), "COPY into the WORKDIR (relative destinations)"
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                for file in src.rglob("*"):
                    rel = file.relative_to(ROOT).as_posix()
                    if file.is_file() and not ignored(rel, rules):
                        target = context / dest / file.relative_to(src)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, target)
            else:
                target = context / dest / src.name if dest.endswith("/") or len(sources) > 1 else context / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
    site = tmp_path_factory.mktemp("site")
    argv = pip_install_argv()
    pip_args = argv[argv.index("install") + 1 :]
    offline = ["--no-build-isolation", "--no-index"] if _can_build_offline() else []
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", *pip_args, "--no-deps", "--target", str(site), *offline],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return site


def test_pip_install_dot_installs_every_module_of_the_source_tree(installed: Path) -> None:
    """What `pip install .` puts in the image is the whole program (setup.py's `packages`)."""
    for package in ("foreman", "statemachine"):
        source = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")}
        copied = {p.relative_to(installed).as_posix() for p in (installed / package).rglob("*.py")}
        assert source - copied == set(), f"not installed by `pip install .`: {sorted(source - copied)}"


async def test_the_cmd_console_script_serves_healthz_with_the_image_env(
    installed: Path, sim: Simulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cmd = exec_form(args_of("CMD")[-1])
    assert cmd[0] in console_scripts(installed), "CMD must be a console script setup.py declares"
    script = installed / "bin" / cmd[0]

    env = image_env()
    data = tmp_path / "data"  # stands in for the /data volume (and WORKDIR)
    data.mkdir()
    host, _, _ = env["FOREMAN_LISTEN"].rpartition(":")
    port = free_port()
    env["FOREMAN_LISTEN"] = f"{host}:{port}"
    env["FOREMAN_DB_PATH"] = str(data / Path(env["FOREMAN_DB_PATH"]).relative_to("/data"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_") and k != "PYTHONPATH"}
    environ |= env | {"FOREMAN_OLLAMA_URL": sim.url, "PYTHONPATH": str(installed)}
    proc = await asyncio.create_subprocess_exec(
        str(script), *cmd[1:], cwd=data, env=environ, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        health = await _wait_healthy(http, f"http://127.0.0.1:{port}/healthz", proc)
        assert health["status"] == "ok" and health["target"] == sim.url
        assert (data / "foreman.db").exists()
        proc.terminate()  # what `docker stop` sends: a graceful stop, exit 0
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, stderr.decode()[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def console_scripts(installed: Path) -> set[str]:
    """The console scripts the installed distribution declares (setup.py's entry_points)."""
    (dist_info,) = installed.glob("*.dist-info")
    entry_points = configparser.ConfigParser()
    entry_points.read(dist_info / "entry_points.txt")
    return set(entry_points["console_scripts"])


async def _wait_healthy(
    http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, timeout: float = 20.0
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.returncode is not None:
            assert proc.stderr is not None
            raise AssertionError(f"foreman exited {proc.returncode}: {(await proc.stderr.read()).decode()[-2000:]}")
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return dict(await resp.json())
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"no answer from {url} within {timeout}s")


async def run_healthcheck(listen: str) -> int:
    """The HEALTHCHECK command as Docker would run it in the container, FOREMAN_LISTEN set."""
    argv = healthcheck_argv()
    assert argv[0] == "python"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_")}
    # A proxy in the environment must not catch the check of 127.0.0.1.
    environ |= {"FOREMAN_LISTEN": listen, "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv[1:], env=environ, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), 10)


async def test_the_healthcheck_passes_against_foreman_and_fails_on_a_closed_port(foreman: Daemon) -> None:
    assert await run_healthcheck(f"0.0.0.0:{foreman.port}") == 0
    assert await run_healthcheck(f"0.0.0.0:{free_port()}") != 0


async def test_the_healthcheck_passes_while_the_target_is_unreachable(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    """A sleeping target is normal (degraded), not a reason for Docker to restart foreman."""
    foreman = await start_foreman(ollama_url=f"http://127.0.0.1:{free_port()}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    degraded = False
    while not degraded and loop.time() < deadline:
        async with http.get(foreman.url + "/healthz") as resp:
            degraded = (await resp.json())["degraded"]
        await asyncio.sleep(0.05)
    assert degraded
    assert await run_healthcheck(f"0.0.0.0:{foreman.port}") == 0


# --- docs/openapi.yaml ------------------------------------------------------------------------------

JOB_API = {
    ("/jobs", "post"),
    ("/jobs", "get"),
    ("/jobs/{}", "get"),
    ("/jobs/{}", "delete"),
    ("/jobs/{}/artifacts/{}", "get"),
    ("/jobs/{}/events", "get"),
    ("/events", "get"),
    ("/healthz", "get"),
    ("/metrics", "get"),
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def test_the_spec_declares_the_job_api_and_only_it() -> None:
    spec = load_spec()
    assert str(spec["openapi"]).startswith("3.1.")
    declared = {(template(p), m) for p, item in spec["paths"].items() for m in item if m in METHODS}
    assert declared == JOB_API
    assert spec["security"] == [{"bearerAuth": []}]
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method in JOB_API:
        op = operation(spec, path, method)
        assert ("security" in op) == (path == "/healthz"), f"{method} {path}: only /healthz is open"
        if "security" in op:
            assert op["security"] == []
    assert {"WebhookEvent", "Job", "Error", "Health"} <= set(spec["components"]["schemas"])
    event = spec["webhooks"]["jobState"]["post"]
    body = resolve(spec, event["requestBody"]["content"]["application/json"]["schema"])
    assert body == spec["components"]["schemas"]["WebhookEvent"]
    headers = {p["name"] for p in event["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature", "X-Foreman-Signature"}
    for schema in walk_schemas(spec):
        unknown = set(schema) - _CHECKED - _ANNOTATIONS
        assert not unknown, f"a schema uses {sorted(unknown)}, which the test validator cannot check: {schema}"
        if "$ref" in schema:
            resolve(spec, {"$ref": schema["$ref"]})  # every reference resolves


def test_the_validator_rejects_what_it_should() -> None:
    spec = load_spec()
    job = {
        "job_id": "01JAAAAAAAAAAAAAAAAAAAAAAA",
        "state": "queued",
        "model": "llama3.2:latest",
        "endpoint": "/api/chat",
        "attempt": 1,
        "created_at": "2025-01-31T12:00:00.000Z",
        "updated_at": "2025-01-31T12:00:00.000Z",
        "queue_position": None,
        "something_new": True,  # extra fields are allowed
    }
    schema = schema_of("Job")
    assert errors(job, schema, spec) == []
    bad: list[dict[str, Any]] = [
        {k: v for k, v in job.items() if k != "state"},
        {**job, "state": "paused"},
        {**job, "attempt": "1"},
        {**job, "attempt": True},
        {**job, "attempt": 0},
        {**job, "job_id": "not-a-ulid"},
        {**job, "model": None},
        {**job, "created_at": "yesterday"},
        {**job, "artifacts": [{"name": "completion", "content_type": "text/plain", "size": 3}]},
        {**job, "progress": {"chunks": 1, "elapsed_s": 0.5}},
    ]
    for instance in bad:
        assert errors(instance, schema, spec), instance
    assert errors({"jobs": [], "next": 7}, schema_of("JobList"), spec)
    assert errors({"error": 404}, schema_of("Error"), spec)
    with pytest.raises(AssertionError, match="does not know"):
        errors(1, {"type": "integer", "exclusiveMinimum": 0}, spec)


async def submit(http: aiohttp.ClientSession, spec: dict[str, Any], url: str, body: dict[str, Any]) -> str:
    request_schema = operation(spec, "/jobs", "post")["requestBody"]["content"]["application/json"]["schema"]
    assert_valid(body, request_schema, spec)
    async with http.post(url + "/jobs", json=body) as resp:
        accepted = await expect(resp, spec, "/jobs", "post", 202)
        assert resp.headers["X-Foreman-Job-Id"] == accepted["job_id"]
    return str(accepted["job_id"])


async def get_job(http: aiohttp.ClientSession, spec: dict[str, Any], url: str, job_id: str, query: str = "") -> Any:
    async with http.get(f"{url}/jobs/{job_id}{query}") as resp:
        return await expect(resp, spec, "/jobs/{}", "get", 200)


async def test_live_answers_and_webhook_events_validate_against_the_spec(
    start_foreman: StartForeman, sim: Simulator, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    spec = load_spec()
    foreman = await start_foreman(webhook_secret=SECRET)
    url, hook = foreman.url, receiver.url
    sim.token_delay = 0.05

    # working (progress), queued (queue_position), the health of a busy foreman, the list
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 30}, "state_webhook_url": hook}
    running = await submit(http, spec, url, body)
    await sim.wait_for(lambda: any(r.kind == "chat" and r.chunks_sent > 2 for r in sim.requests))
    job = await get_job(http, spec, url, running)
    assert job["state"] == "working" and "progress" in job
    queued = await submit(http, spec, url, {"model": "qwen3", "prompt": "why?", "state_webhook_url": hook})
    job = await get_job(http, spec, url, queued)
    assert job["state"] == "queued" and job["queue_position"] == 1 and job["state_webhook_url"] == hook
    async with http.get(url + "/healthz") as resp:
        health = await expect(resp, spec, "/healthz", "get", 200)
    assert health["running"]["job_id"] == running and health["queue"]["queued"] == 1
    async with http.get(url + "/jobs?limit=1") as resp:
        page = await expect(resp, spec, "/jobs", "get", 200)
    assert [j["job_id"] for j in page["jobs"]] == [queued] and page["next"] == queued

    # cancelled, then 409 on a terminal job
    async with http.delete(f"{url}/jobs/{queued}") as resp:
        job = await expect(resp, spec, "/jobs/{}", "delete", 200)
    assert job["state"] == "cancelled" and job["error"]
    async with http.delete(f"{url}/jobs/{queued}") as resp:
        await expect(resp, spec, "/jobs/{}", "delete", 409)

    # done: result and artifacts, each artifact's bytes with its declared content type
    job = await get_job(http, spec, url, running, "?wait=10")
    assert job["state"] == "done" and job["result"] and {a["name"] for a in job["artifacts"]} >= {"completion"}
    for artifact in job["artifacts"]:
        async with http.get(url + artifact["url"]) as resp:
            await expect(resp, spec, "/jobs/{}/artifacts/{}", "get", 200)
            assert resp.headers["Content-Type"] == artifact["content_type"]
            assert len(await resp.read()) == artifact["size"]

    # the job's event feed: its history at once (it has ended), 204 after its last event, 404
    async with http.get(f"{url}/jobs/{running}/events") as resp:
        stream = await expect(resp, spec, "/jobs/{}/events", "get", 200)
    last_id = [line for line in stream.decode().splitlines() if line.startswith("id: ")][-1][4:]
    async with http.get(f"{url}/jobs/{running}/events", headers={"Last-Event-ID": last_id}) as resp:
        assert resp.status == 204 and str(resp.status) in operation(spec, "/jobs/{}/events", "get")["responses"]
    async with http.get(f"{url}/jobs/01NOPE/events") as resp:
        await expect(resp, spec, "/jobs/{}/events", "get", 404)
    async with http.get(f"{url}/events?state=paused") as resp:
        await expect(resp, spec, "/events", "get", 400)

    # failed, with the target's error
    sim.inject(Fault("status", status=500, message="simulated failure"))
    failed = await submit(http, spec, url, {"model": "llama3.2", "messages": HELLO, "state_webhook_url": hook})
    job = await get_job(http, spec, url, failed, "?wait=10")
    assert job["state"] == "failed" and job["error"]

    # the whole list, and errors
    async with http.get(url + "/jobs") as resp:
        page = await expect(resp, spec, "/jobs", "get", 200)
    assert {j["state"] for j in page["jobs"]} == {"done", "cancelled", "failed"} and page["next"] is None
    async with http.get(url + "/jobs/01NOPE") as resp:
        assert (await expect(resp, spec, "/jobs/{}", "get", 404))["error"]
    async with http.get(url + "/jobs?state=paused") as resp:
        await expect(resp, spec, "/jobs", "get", 400)
    async with http.get(f"{url}/jobs/{running}/artifacts/nope") as resp:
        await expect(resp, spec, "/jobs/{}/artifacts/{}", "get", 404)
    async with http.post(url + "/jobs", json={"model": "ghost", "messages": HELLO}) as resp:
        await expect(resp, spec, "/jobs", "post", 404)
    async with http.post(url + "/jobs", data=b"nope") as resp:
        await expect(resp, spec, "/jobs", "post", 400)
    async with http.get(url + "/metrics") as resp:
        await expect(resp, spec, "/metrics", "get", 200)

    # every webhook event, and the headers of every delivery
    def settled() -> bool:
        states = {(e["job_id"], e["state"]) for e in receiver.accepted()}
        return {(running, "done"), (queued, "cancelled"), (failed, "failed")} <= states

    await receiver.wait_for(settled)
    webhook = spec["webhooks"]["jobState"]["post"]
    event_schema = webhook["requestBody"]["content"]["application/json"]["schema"]
    events = receiver.accepted()
    assert [e["state"] for e in events if e["job_id"] == running] == ["queued", "loading", "working", "done"]
    for event in events:
        assert_valid(event, event_schema, spec)
        assert ("result" in event) == ("artifacts" in event) == (event["state"] == "done")
        assert ("error" in event) == (event["state"] in ("failed", "cancelled"))
    for delivery in receiver.deliveries:
        headers = {k.lower(): v for k, v in delivery["headers"].items()}
        for parameter in webhook["parameters"]:
            value = headers.get(parameter["name"].lower())
            assert value is not None, f"the delivery lacks {parameter['name']} (signed: all four are sent)"
            assert_valid(value, parameter["schema"], spec)
        assert headers["webhook-id"] == delivery["json"]["event_id"]


async def test_every_operation_but_healthz_needs_the_token(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    spec = load_spec()
    foreman = await start_foreman(token="s3cret")
    for path, item in spec["paths"].items():
        concrete = path.replace("{job_id}", "01NOPE").replace("{name}", "completion")
        for method in set(item) & METHODS:
            body = {"model": "llama3.2", "messages": HELLO} if method == "post" else None
            async with http.request(method.upper(), foreman.url + concrete, json=body) as resp:
                if operation(spec, path, method).get("security") == []:
                    assert resp.status == 200
                else:
                    assert (await expect(resp, spec, path, method, 401))["error"] == "unauthorized"
    headers = {"Authorization": "Bearer s3cret"}
    async with http.get(foreman.url + "/jobs", headers=headers) as resp:
        await expect(resp, spec, "/jobs", "get", 200)
