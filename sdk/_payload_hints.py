"""The type hints of a workflow run method, signal, query or activity (and later an
update: any handler works the same way), and converting its arguments and result
with them (sdk/converter.py). Resolved on first use, not at decoration, so hints may
name classes defined further down the module; cached per function."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import PayloadError
from sdk._definitions import ActivityDefinition, WorkflowDefinition
from sdk.converter import value_to_type, value_to_wire

_VARIADIC = inspect.Parameter.VAR_POSITIONAL
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class PayloadHints:
    """What a callable's arguments and result are converted to and checked against."""

    #: Names the callable in messages ("Order.run", "charge_customer").
    name: str
    #: Positional parameters in order: (name, hint); Any when not annotated.
    params: tuple[tuple[str, Any], ...] = ()
    #: `*args`: (name, hint), or None when the callable has none.
    rest: tuple[str, Any] | None = None
    result: Any = Any

    def _hint(self, index: int) -> Any:
        if index < len(self.params):
            return self.params[index][1]
        return self.rest[1] if self.rest is not None else Any

    def _what(self, index: int) -> Callable[[], str]:
        """Names argument `index` in a message (made only when there is one)."""

        def what() -> str:
            if index < len(self.params):
                return f"parameter {self.params[index][0]!r} of {self.name}"
            if self.rest is not None:
                return f"parameter *{self.rest[0]} (argument {index + 1}) of {self.name}"
            # No such parameter: the call itself fails where it is made.
            return f"argument {index + 1} of {self.name}"

        return what

    def encode_args(self, args: Sequence[Any]) -> list[Any]:
        """Arguments as plain data, each checked against its parameter's hint (the
        sender's side: a value the receiver could not convert fails here)."""
        return [value_to_wire(arg, self._hint(i), what=self._what(i))
                for i, arg in enumerate(args)]

    def decode_args(self, args: Sequence[Any]) -> list[Any]:
        """Decoded arguments converted to their parameters' hints."""
        return [value_to_type(self._hint(i), arg, what=self._what(i))
                for i, arg in enumerate(args)]

    def encode_result(self, value: Any) -> Any:
        return value_to_wire(value, self.result, what=self._result_what)

    def decode_result(self, value: Any) -> Any:
        return value_to_type(self.result, value, what=self._result_what)

    def _result_what(self) -> str:
        return f"result of {self.name}"


def untyped(name: str) -> PayloadHints:
    """For a callable named by its wire name only: values by their own types."""
    return PayloadHints(name)


def with_result(hints: PayloadHints, result_type: Any) -> PayloadHints:
    """`result_type=` given by the caller wins over the return annotation."""
    if result_type is None:
        return hints
    return PayloadHints(hints.name, hints.params, hints.rest, result_type)


@functools.lru_cache(maxsize=4096)
def hints_of(fn: Callable[..., Any], *, method: bool = False) -> PayloadHints:
    """The hints of `fn`. `method`: a function defined in a class, whose first parameter
    (self) is not an argument. A function whose first parameter is an unannotated
    `self` is taken as one too (an activity method named on its class)."""
    name = str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)
    target = inspect.unwrap(fn)
    try:
        resolved = typing.get_type_hints(target)
    except Exception as exc:  # NameError for a name the module does not define, ...
        raise PayloadError(
            f"cannot resolve the type hints of {name}: {exc} (payloads are converted to "
            "them: define the types they name at module level)"
        ) from None
    params = list(inspect.signature(fn).parameters.values())
    if params and (method or (params[0].name == "self"
                              and params[0].annotation is inspect.Parameter.empty
                              and not inspect.ismethod(fn))):
        params = params[1:]
    positional = tuple((p.name, resolved.get(p.name, Any)) for p in params if p.kind in _POSITIONAL)
    rest = next(((p.name, resolved.get(p.name, Any)) for p in params if p.kind == _VARIADIC), None)
    return PayloadHints(name, positional, rest, resolved.get("return", Any))


def resolve_all(
    workflows: Iterable[WorkflowDefinition], activities: Iterable[ActivityDefinition]
) -> None:
    """Resolve the hints of every handler now: a Worker is built once its modules are
    loaded, so a hint naming an undefined type stops it at once, not at its first task."""
    for definition in workflows:
        for fn in (definition.run_fn, *definition.signals.values(),
                   *definition.queries.values()):
            hints_of(fn, method=True)
    for activity in activities:
        hints_of(activity.fn)
