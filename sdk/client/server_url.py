"""Where a client connects when it is given no URL. Both rules start with
`REDURABLE_URL`: set it once and Python code and every `redurable` command use the same
server. Without it they differ, on purpose:

- `Client.connect()` uses redis://localhost:6379, the contract of DESIGN.md ("Public
  API"): application code and deployments are written against it, and it is where a
  Redis usually is.
- The CLI uses redis://127.0.0.1:6390, the server `redurable dev` starts: the CLI is
  first met in the README's tour, which starts that server, and a command typed with
  nothing configured then lands on the development server, never on whatever Redis
  runs on the machine's standard port.
"""

from __future__ import annotations

import os

from sdk._devserver import DEFAULT_DEV_PORT

#: `Client.connect()` with no URL and no REDURABLE_URL.
CLIENT_DEFAULT_URL = "redis://localhost:6379"
#: A `redurable` command with no --redis-url and no REDURABLE_URL: `redurable dev`.
CLI_DEFAULT_URL = f"redis://127.0.0.1:{DEFAULT_DEV_PORT}"


def client_url() -> str:
    """REDURABLE_URL when it is set (and not empty), else CLIENT_DEFAULT_URL."""
    return os.environ.get("REDURABLE_URL") or CLIENT_DEFAULT_URL


def cli_url() -> str:
    """REDURABLE_URL when it is set (and not empty), else CLI_DEFAULT_URL."""
    return os.environ.get("REDURABLE_URL") or CLI_DEFAULT_URL
