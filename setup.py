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
        "test": [
            "pytest>=8",
            "setuptools>=70.1",
            "pytest-asyncio>=0.24",
            "pytest-timeout>=2.3",
            "ollama>=0.6",
            "openai>=1.66",  # the Responses API (client.responses)
            "anthropic>=0.49",  # the simulator's /v1/messages is tested with the real SDK
            "standardwebhooks>=1.0",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
        ],
    },
    entry_points={"console_scripts": ["foreman = foreman.cli:main"]},
)
