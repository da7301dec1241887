"""The workflow that recorded test_replayer's history, for `redurable workflow replay`."""

from tests.integration.test_replayer import Greeter, shout

WORKFLOWS = [Greeter]
ACTIVITIES = [shout]
