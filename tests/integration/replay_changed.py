"""A changed version of test_replayer's workflow, for `redurable workflow replay`."""

from tests.integration.test_replayer import GreeterChanged

WORKFLOWS = [GreeterChanged]
