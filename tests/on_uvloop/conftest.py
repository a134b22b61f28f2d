"""Every async test in this directory runs on a uvloop event loop (issue 13: the target client
must not depend on the stdlib loop's internals). uvloop is a test extra, never a dependency."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], Any]]:
    return {"uvloop": uvloop.new_event_loop}
