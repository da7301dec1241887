"""Answering a visibility query (engine/visibility_query.py) from the per-shard indexes.

Each shard is asked on its own (its keys share one hash slot, so this runs on Redis
Cluster too) and the client merges the answers. A query's leaves compile to *steps*
(engine/visibility_plan.py, pure):
index reads (ZRANGEBYSCORE of a zset, ZMSCORE for ids), what to take away (other index
reads), and a predicate for what no index answers. What is read, per leaf
(docs/visibility.md keeps the same table):

- indexed, no scan: `=`, `IN`, `!=`, `NOT IN` on ExecutionStatus; `=`/`IN` on WorkflowId,
  WorkflowType and KEYWORD/KEYWORD_LIST/BOOL attributes; every comparison, BETWEEN and
  IN on StartTime, CloseTime and INT/DOUBLE/DATETIME attributes;
- the attribute's own index, then filtered: `!=`/`NOT IN` on KEYWORD/KEYWORD_LIST/BOOL
  (its index minus the value's), ranges and STARTS_WITH on KEYWORD/KEYWORD_LIST, TEXT;
- every workflow of the shard (index:start), then filtered: `!=`/`NOT IN` on
  WorkflowType (minus its index), ranges and STARTS_WITH on WorkflowId and WorkflowType,
  `!=`/NOT IN on WorkflowId.

Under AND, each part only keeps what the parts before it kept (indexed parts go first),
so a filter runs over the candidates of the indexed parts, not over the shard.
"""


from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from engine.keys import Keys
from engine.search_attributes import BUILT_IN_NAMES, SearchAttributeIndexedValueType
from engine.visibility_plan import (
    AllOf,
    AnyOf,
    Compiler,
    Members,
    Plan,
    Range,
    Read,
    Row,
    Step,
    Types,
    as_text,
)
from engine.visibility_query import And, Node, Or, Query

#: Every read here names one key (or pipelines reads of one shard), so a cluster client
#: routes each to the master of its shard's hash slot.
AnyRedis = Redis | RedisCluster

# --- running a plan on one shard -------------------------------------------------------

_ROW_FIELDS = ("type", "search_attributes")


class ShardSearch:
    def __init__(self, redis: AnyRedis, keys: Keys, shard: int) -> None:
        self.redis, self.keys, self.shard = redis, keys, shard
        self._rows: dict[str, Row | None] = {}

    async def _read(self, read: Read) -> set[str]:
        if isinstance(read, Members):
            scores = await self.redis.zmscore(read.key, list(read.ids))
            return {i for i, score in zip(read.ids, scores, strict=True) if score is not None}
        members = await self.redis.zrangebyscore(read.key, read.low, read.high)
        return {as_text(m) for m in members}

    async def _union(self, reads: Iterable[Read]) -> set[str]:
        out: set[str] = set()
        for read in reads:
            out |= await self._read(read)
        return out

    async def _state(self, ids: set[str]) -> None:
        missing = [i for i in ids if i not in self._rows]
        if not missing:
            return
        pipe = self.redis.pipeline(transaction=False)
        for wf_id in missing:
            pipe.hmget(self.keys.workflow(wf_id), *_ROW_FIELDS)
        for wf_id, (wtype, attrs) in zip(missing, await pipe.execute(), strict=True):
            self._rows[wf_id] = None if wtype is None else Row(
                wf_id, as_text(wtype), json.loads(attrs) if attrs else {})

    async def run(self, plan: Plan, candidates: set[str] | None = None) -> set[str]:
        """The ids of the shard's workflows that the plan holds for (within
        `candidates` when given)."""
        match plan:
            case AllOf(parts=parts):
                ordered = sorted(parts, key=lambda p: not _indexed(p))
                for part in ordered:
                    candidates = await self.run(part, candidates)
                    if not candidates:
                        return set()
                return candidates if candidates is not None else set()
            case AnyOf(parts=parts):
                out: set[str] = set()
                for part in parts:
                    out |= await self.run(part, candidates)
                return out
        assert isinstance(plan, Step)
        if plan.include is None or (plan.predicate is not None and candidates is not None):
            # A predicate checks that the run has the attribute itself: with candidates
            # from the parts before it, filter those, not the attribute's whole index.
            if candidates is not None:
                base = set(candidates)
            else:
                base = await self._read(Range(self.keys.index_start(self.shard)))
        else:
            base = await self._union(plan.include)
            if candidates is not None:
                base &= candidates
        if plan.exclude and base:
            base -= await self._union(plan.exclude)
        if plan.predicate is None or not base:
            return base
        if not plan.needs_state:
            return {i for i in base if plan.predicate(Row(i))}
        await self._state(base)
        return {i for i in base if (row := self._rows.get(i)) is not None and plan.predicate(row)}

    async def order_scores(self, ids: set[str], order_by: str) -> list[tuple[float | None, str]]:
        if not ids:
            return []
        key = (self.keys.index_close if order_by == "CloseTime" else self.keys.index_start)(
            self.shard)
        listed = sorted(ids)
        scores = await self.redis.zmscore(key, listed)
        return list(zip(scores, listed, strict=True))


def _indexed(plan: Plan) -> bool:
    return isinstance(plan, Step) and plan.include is not None and plan.predicate is None


async def attribute_types(redis: AnyRedis, keys: Keys) -> Types:
    """Every custom attribute name any shard has seen, with its types."""
    replies = await asyncio.gather(*(redis.smembers(keys.sa_types(s)) for s in range(keys.shards)))
    types: Types = {}
    for members in replies:
        for member in members:
            name, _, kind = as_text(member).rpartition(":")
            if kind in SearchAttributeIndexedValueType.__members__:
                types.setdefault(name, set()).add(SearchAttributeIndexedValueType[kind])
    return types


async def _shard_matches(
    redis: AnyRedis, keys: Keys, shard: int, query: Query, types: Types
) -> tuple[ShardSearch, set[str]]:
    plan = Compiler(keys, shard, types).plan(query.where)
    searcher = ShardSearch(redis, keys, shard)
    return searcher, await searcher.run(plan)


async def _prepare(redis: AnyRedis, keys: Keys, query: Query) -> Types:
    """The types the query needs, and every shard's plan compiled once, so a bad query
    fails before any index is read."""
    types = await attribute_types(redis, keys) if _has_custom(query.where) else {}
    for shard in range(keys.shards):
        Compiler(keys, shard, types).plan(query.where)
    return types


async def search(redis: AnyRedis, keys: Keys, query: Query) -> list[tuple[float | None, str]]:
    """(order score, id) of every match of every shard, in the query's order (runs
    without the order field's value, such as open runs under CloseTime, go last)."""
    types = await _prepare(redis, keys, query)

    async def one(shard: int) -> list[tuple[float | None, str]]:
        if query.where is None and query.order_by == "StartTime":
            rows: list[Any] = await redis.zrange(keys.index_start(shard), 0, -1, withscores=True)
            return [(float(row[1]), as_text(row[0])) for row in rows]
        searcher, ids = await _shard_matches(redis, keys, shard, query, types)
        return await searcher.order_scores(ids, query.order_by)

    found = [row for rows in await asyncio.gather(*(one(s) for s in range(keys.shards)))
             for row in rows]
    with_score = [(float(s), i) for s, i in found if s is not None]
    with_score.sort(reverse=query.descending)
    return [*with_score, *((None, i) for s, i in found if s is None)]


async def count(redis: AnyRedis, keys: Keys, query: Query) -> int:
    """How many workflows match (no query: ZCARD of every shard's start index)."""
    if query.where is None:
        cards = await asyncio.gather(*(redis.zcard(keys.index_start(s))
                                       for s in range(keys.shards)))
        return sum(cards)
    types = await _prepare(redis, keys, query)

    async def one(shard: int) -> int:
        plan = Compiler(keys, shard, types).plan(query.where)
        if (isinstance(plan, Step) and plan.include is not None and len(plan.include) == 1
                and isinstance(plan.include[0], Range) and not plan.exclude
                and plan.predicate is None):
            only = plan.include[0]  # one index range: counted where it is
            return int(await redis.zcount(only.key, only.low, only.high))
        return len(await ShardSearch(redis, keys, shard).run(plan))

    return sum(await asyncio.gather(*(one(s) for s in range(keys.shards))))


def _has_custom(node: Node | None) -> bool:
    match node:
        case None:
            return False
        case And(parts=parts) | Or(parts=parts):
            return any(_has_custom(p) for p in parts)
    assert not isinstance(node, And | Or)
    return node.field not in BUILT_IN_NAMES
