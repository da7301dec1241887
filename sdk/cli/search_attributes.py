"""`redurable workflow search-attributes`: the search attributes the namespace's runs
have set, with their types. There is no registration (docs/visibility.md): this is what
the shards' `index:sa` sets hold, the names a query resolves against."""

from __future__ import annotations

from typing import Any

from engine.keys import DEFAULT_PREFIX
from engine.visibility import attribute_types
from sdk.cli.common import (
    Output,
    OutputOption,
    PrefixOption,
    UrlOption,
    print_json,
    print_table,
    stdout,
    with_client,
)
from sdk.cli.tables import Column
from sdk.client.client import Client


def search_attributes(
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Search attributes any run has set, and their types (a name used with two types
    lists both)."""

    async def body(client: Client) -> dict[str, list[str]]:
        types: Any = await client.retrier.retry(
            "search attributes", lambda: attribute_types(client.redis, client.keys))
        return {name: sorted(t.name for t in kinds) for name, kinds in sorted(types.items())}

    found = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json({"search_attributes": found})
    elif not found:
        stdout.print("No search attributes: no run has set one.")
    else:
        print_table([Column("Name"), Column("Type")],
                    [[name, ", ".join(kinds)] for name, kinds in found.items()])
