"""`@workflow.update` and `@<handler>.validator` (temporalio's shapes): the decorator
marks the method like a signal handler and gives it a `validator` decorator that
attaches the validator to it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from sdk._definitions import UPDATE_VALIDATOR, mark_update

_P = ParamSpec("_P")
_R = TypeVar("_R", covariant=True)


class UpdateMethodMultiParam(Protocol, Generic[_P, _R]):
    """An update handler as `@workflow.update` returns it (temporalio's name): the
    method itself, plus `validator` to attach a validator with the same parameters."""

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R | Awaitable[_R]: ...

    def validator(self, vfunc: Callable[_P, None]) -> Callable[_P, None]: ...


def _attach_validator(handler: Callable[..., Any]) -> Callable[..., Any]:
    def validator(vfunc: Callable[..., None]) -> Callable[..., None]:
        if inspect.iscoroutinefunction(vfunc):
            raise TypeError(f"update validator {vfunc.__qualname__} must not be async")
        setattr(handler, UPDATE_VALIDATOR, vfunc)
        return vfunc

    return validator


def _mark(fn: Callable[..., Any], name: str | None) -> Any:
    mark_update(fn, name)
    fn.validator = _attach_validator(fn)  # type: ignore[attr-defined]
    return fn


@overload
def update(fn: Callable[_P, Awaitable[_R]], /) -> UpdateMethodMultiParam[_P, _R]: ...
@overload
def update(fn: Callable[_P, _R], /) -> UpdateMethodMultiParam[_P, _R]: ...
@overload
def update(
    *, name: str | None = None
) -> Callable[[Callable[_P, _R]], UpdateMethodMultiParam[_P, _R]]: ...
def update(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Marks an update handler (sync or async method); `name` overrides the wire name.
    `@handler.validator` attaches a sync method with the same parameters that raises to
    reject the update before it is written to history (it must not change state)."""
    if fn is not None:
        return _mark(fn, name)
    return lambda f: _mark(f, name)
