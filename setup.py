"""Packaging for foreman: a queued, observable Ollama front for one target."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    # "foreman" on PyPI is an unrelated project; the import package stays `foreman`.
    name="foreman-ollama",
    version="0.1.0",
    description="One Ollama server as a shared, queued, observable service",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["foreman", "foreman.*", "statemachine"]),
    install_requires=[
        "tornado>=6.6",
        "aiosqlite>=0.20",
        "python-ulid>=3.0",
        "transitions==0.9.3",  # statemachine._SequentialMachine overrides its internals: see tests/test_statemachine.py
        "pyyaml>=6.0",
        "aiohttp>=3.10",  # webhook deliveries (docs/adr/0016)
        "httptools>=0.6",  # parses the target's answers (docs/adr/0021)
        "prometheus-client>=0.20",
    ],
    extras_require={
        # foreman.client (docs/adr/0032); the daemon and the CLI never import it.
        "client": ["httpx>=0.27"],
        "test": [
            "httpx>=0.27",
            "pytest>=8",
            "setuptools>=70.1",
            "pytest-asyncio>=1.4",  # the loop-factory hook tests/on_uvloop/ uses
            "uvloop>=0.19",  # tests/on_uvloop/: the target client on another event loop (never a dependency)
            "pytest-timeout>=2.3",
            "ollama>=0.6",
            "openai>=1.66",  # the Responses API (client.responses)
            "anthropic>=0.49",  # the simulator's /v1/messages is tested with the real SDK
            "langchain-ollama>=0.2",
            "standardwebhooks>=1.0",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
        ],
    },
    entry_points={"console_scripts": ["foreman = foreman.cli:main"]},
)
