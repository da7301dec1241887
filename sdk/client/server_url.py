"""Where a client connects when it is given no URL: one rule for Python code
(`Client.connect()`) and for every `redurable` command.

`REDURABLE_URL` when it is set, else the server `redurable dev` starts
(redis://127.0.0.1:6390). Not the standard Redis port: with nothing configured, a script
or a command then finds the development server, and never writes into whatever Redis
happens to run on 6379.
"""

from __future__ import annotations

import os

from sdk._devserver import DEFAULT_DEV_PORT

#: The server `redurable dev` listens on.
DEFAULT_URL = f"redis://127.0.0.1:{DEFAULT_DEV_PORT}"


def default_url() -> str:
    """REDURABLE_URL when it is set (and not empty), else DEFAULT_URL."""
    return os.environ.get("REDURABLE_URL") or DEFAULT_URL
