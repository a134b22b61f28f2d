"""The README's promises to a newcomer, run as written (ports moved to free ones)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT, free_port

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_the_test_command_is_what_ci_runs() -> None:
    command = next(b for b in blocks("sh") if "pip install -e '.[test]'" in b).strip()
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


async def test_the_try_out_answers_a_chat(tmp_path: Path) -> None:
    """The second "Run it" command and the Python snippet after it, with the ports moved."""
    tryout = next(b for b in blocks("sh") if "foreman simulate" in b).strip()
    simulate = re.search(r"\(python -m foreman simulate ([^&)]*)&\)", tryout)
    serve = re.search(r"&& (foreman serve .*)$", tryout)
    assert simulate and serve, tryout
    sim_port, foreman_port = free_port(), free_port()
    sim_args = simulate.group(1).replace("127.0.0.1:11434", f"127.0.0.1:{sim_port}").split()
    serve_args = serve.group(1).replace("127.0.0.1:11434", f"127.0.0.1:{sim_port}").split()[1:]
    assert serve_args[:1] == ["serve"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_")},
        "FOREMAN_LISTEN": f"127.0.0.1:{foreman_port}",
        "FOREMAN_DB_PATH": str(tmp_path / "f.db"),
    }
    bin_dir = Path(sys.executable).parent
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "foreman", "simulate", *sim_args, cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    foreman = await asyncio.create_subprocess_exec(
        str(bin_dir / "foreman"), *serve_args, cwd=tmp_path, env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        snippet = next(b for b in blocks("python") if "ollama.Client" in b and "print(" in b)
        assert 'host="http://127.0.0.1:8080"' in snippet  # the README's default listen address
        snippet = snippet.replace("127.0.0.1:8080", f"127.0.0.1:{foreman_port}")
        wait = textwrap.dedent(f"""
            import socket, time
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", {foreman_port}), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            """)
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            wait + snippet,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(run.communicate(), 60)
        assert run.returncode == 0, err.decode()
        assert len(out.decode().split()) >= 4  # the simulated model's deterministic answer
    finally:
        for proc in (foreman, sim):
            proc.terminate()
            await proc.wait()
