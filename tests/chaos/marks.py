"""Marks the chaos tests share."""

from __future__ import annotations

import pytest

from scripts.chaos.server import redis_server_binary

#: A scenario of scripts/chaos at CI size.
SCENARIO = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]
#: A scenario that runs on its own redis-server (it kills the server or cuts its
#: connections), whatever REDURABLE_TEST_URL says.
PRIVATE_SERVER = [
    *SCENARIO,
    pytest.mark.skipif(redis_server_binary() is None, reason="needs Debian's redis-server"),
]
