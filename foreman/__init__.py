"""foreman: one Ollama server as a shared, queued, observable service."""

__version__ = "0.1.0"
