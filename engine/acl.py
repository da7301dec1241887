"""The Redis ACL rule for a user limited to one namespace (docs/security.md).

Workers and clients of a namespace need its keys (`<prefix>:...`, including the
shard-tagged `<prefix>:{7}:...`) and its pub/sub channels (workflow-close notices,
worker presence), the data commands, and FCALL of the engine's functions. They do not
need to load functions: FUNCTION LOAD replaces server-wide code that every namespace
runs, so an admin does it (`redurable load-functions`) and Client.connect only checks
the version (engine.functions.load_library).
"""

from __future__ import annotations

from engine.errors import InvalidArgumentError
from engine.validate import check_name

#: Glob characters would widen `~<prefix>:*` beyond the namespace.
GLOB_CHARS = frozenset("*?[]\\")


def acl_rules(prefix: str) -> list[str]:
    """ACL SETUSER rules, in order (later rules override earlier ones)."""
    check_name(prefix, "namespace prefix")
    if GLOB_CHARS & set(prefix):
        raise InvalidArgumentError(
            f"namespace prefix {prefix!r} has a glob character (* ? [ ] \\): "
            "an ACL key pattern built from it would match other keys"
        )
    return [
        "resetkeys",
        f"~{prefix}:*",
        "resetchannels",
        f"&{prefix}:*",
        "-@all",
        "+@read",
        "+@write",
        "+@pubsub",
        "+@connection",
        "+@transaction",
        "+time",
        # Server administration, and commands that reach beyond the key patterns.
        "-@dangerous",
        # Loading, deleting or flushing functions and running ad-hoc scripts: only the
        # engine's functions may run, through FCALL.
        "-@scripting",
        "+fcall",
        "+fcall_ro",
        # These return key names of the whole database, other namespaces' included
        # (ACL key patterns do not filter them), and redurable does not use them.
        "-scan",
        "-randomkey",
        # Cluster mode: Client.connect asks CLUSTER INFO whether the server is a node
        # of a cluster, and the cluster clients read the slot map (engine/resp_cluster.py,
        # redis-py's RedisCluster). Read-only, about the topology, no key names.
        "+cluster|info",
        "+cluster|slots",
        "+cluster|shards",
    ]


def acl_setuser_command(user: str, password: str, prefix: str) -> list[str]:
    """The whole ACL SETUSER command, as the docs show it."""
    return ["ACL", "SETUSER", user, "reset", "on", f">{password}", *acl_rules(prefix)]
