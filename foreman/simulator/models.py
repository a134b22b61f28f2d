"""The installed-model inventory: names, capabilities and the metadata Ollama reports.

Name rules follow Ollama: a bare name means ``:latest`` and lookup ignores case, while
responses echo whatever spelling the client sent.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_MODELS = ["llama3.2:latest", "qwen3:latest", "nomic-embed-text:latest"]

_THINKING_MARKERS = ("qwen3", "deepseek-r1", "gpt-oss")


def full_name(name: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest``; a tag (after the last ``/``) is kept."""
    name = name.strip()
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def model_key(name: str) -> str:
    """The case-insensitive lookup key of a model name."""
    return full_name(name).lower()


@dataclass(frozen=True)
class _Family:
    family: str
    parameter_size: str
    quantization: str
    size: int
    context_length: int
    embedding_length: int


_KNOWN = {
    "llama3.2": _Family("llama", "3.2B", "Q4_K_M", 2019393189, 131072, 3072),
    "qwen3": _Family("qwen3", "8.2B", "Q4_K_M", 5225388164, 40960, 4096),
    "nomic-embed-text": _Family("nomic-bert", "137M", "F16", 274302450, 2048, 768),
}
_GENERIC = _Family("llama", "7.2B", "Q4_K_M", 4113301824, 32768, 4096)
_GENERIC_EMBED = _Family("bert", "335M", "F16", 669615493, 512, 1024)


@dataclass(frozen=True)
class ModelInfo:
    """One installed model as `/api/tags` and `/api/show` describe it."""

    name: str
    family: str
    parameter_size: str
    quantization: str
    size: int
    digest: str
    modified: float  # wall-clock seconds
    capabilities: tuple[str, ...]
    context_length: int
    embedding_length: int

    @property
    def key(self) -> str:
        return model_key(self.name)

    @property
    def embedding_only(self) -> bool:
        return "completion" not in self.capabilities

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }

    def model_info(self) -> dict[str, Any]:
        """GGUF-style keys, the part of `/api/show` clients read most."""
        arch = self.family
        return {
            "general.architecture": arch,
            "general.basename": self.name.split(":", 1)[0].rsplit("/", 1)[-1],
            "general.file_type": 15 if self.quantization.startswith("Q4") else 1,
            "general.parameter_count": _parameter_count(self.parameter_size),
            "general.quantization_version": 2,
            f"{arch}.context_length": self.context_length,
            f"{arch}.embedding_length": self.embedding_length,
            f"{arch}.block_count": 28,
            "tokenizer.ggml.model": "gpt2",
        }


def describe(name: str, modified: float | None = None) -> ModelInfo:
    """Invent plausible metadata for a model name."""
    name = full_name(name)
    base = name.split(":", 1)[0].rsplit("/", 1)[-1].lower()
    embedding = "embed" in name.lower()
    fam = _KNOWN.get(base) or (_GENERIC_EMBED if embedding else _GENERIC)
    if embedding:
        caps: tuple[str, ...] = ("embedding",)
    elif any(marker in name.lower() for marker in _THINKING_MARKERS):
        caps = ("completion", "tools", "thinking")
    else:
        caps = ("completion", "tools")
    return ModelInfo(
        name=name,
        family=fam.family,
        parameter_size=fam.parameter_size,
        quantization=fam.quantization,
        size=fam.size,
        digest=hashlib.sha256(name.lower().encode()).hexdigest(),
        modified=time.time() if modified is None else modified,
        capabilities=caps,
        context_length=fam.context_length,
        embedding_length=fam.embedding_length,
    )


def _parameter_count(size: str) -> int:
    scale = {"B": 1_000_000_000, "M": 1_000_000}.get(size[-1:], 1)
    try:
        return int(float(size[:-1]) * scale)
    except ValueError:
        return 0


class Inventory:
    """Installed models keyed case-insensitively."""

    def __init__(self, names: list[str]) -> None:
        self._models: dict[str, ModelInfo] = {}
        start = time.time()
        for index, name in enumerate(names):
            # Staggered times keep the "most recently modified first" order stable.
            self.add(name, modified=start - index * 3600)

    def add(self, name: str, *, like: ModelInfo | None = None, modified: float | None = None) -> ModelInfo:
        """Install (or re-install) a model; `like` copies another model's metadata."""
        if like is not None:
            full = full_name(name)
            info = replace(
                like,
                name=full,
                digest=hashlib.sha256(full.lower().encode()).hexdigest(),
                modified=time.time() if modified is None else modified,
            )
        else:
            info = describe(name, modified)
        self._models[info.key] = info
        return info

    def remove(self, name: str) -> ModelInfo | None:
        return self._models.pop(model_key(name), None)

    def get(self, name: str | None) -> ModelInfo | None:
        if not name or not name.strip():
            return None
        return self._models.get(model_key(name))

    def all(self) -> list[ModelInfo]:
        """Most recently modified first, as `/api/tags` orders them."""
        return sorted(self._models.values(), key=lambda m: -m.modified)

    def names(self) -> list[str]:
        return [m.name for m in self.all()]
