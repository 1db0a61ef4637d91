"""A mypy plugin: an XComArg stands for the value the upstream task returns, as it does when the task runs.

TaskFlow DAGs pass one task's output to the next (``load(extract())``, ``report(op.output)``); Airflow
resolves the XComArg to the returned value before the downstream function runs, but its type hints say
``XComArg``, so every such call is an ``arg-type`` error against the function's real parameter types.
Airflow's own repository solves this with a mypy plugin of the same idea (``airflow.mypy.plugin.outputs``,
not shipped in the apache-airflow package): the output of an operator and the call of a ``@task`` are
typed ``Any``. Everything else in a DAG file (operator arguments, params, helpers) is checked as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.plugin import AttributeContext, MethodContext, Plugin
from mypy.types import AnyType, Type, TypeOfAny

#: ``op.output`` of a classic operator, plain or mapped.
_OUTPUTS = frozenset(
    {
        "airflow.sdk.bases.operator.BaseOperator.output",
        "airflow.sdk.definitions.mappedoperator.MappedOperator.output",
    }
)
#: Calling a ``@task`` (the decorator's declared type, and its runtime class).
_TASK_CALLS = frozenset(
    {
        "airflow.sdk.bases.decorator.Task.__call__",
        "airflow.sdk.bases.decorator._TaskDecorator.__call__",
    }
)


def _as_any(ctx: AttributeContext | MethodContext) -> Type:
    return AnyType(TypeOfAny.special_form, line=ctx.context.line, column=ctx.context.column)


class XComArgAsValue(Plugin):
    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        return _as_any if fullname in _OUTPUTS else None

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return _as_any if fullname in _TASK_CALLS else None


def plugin(version: str) -> type[Plugin]:
    return XComArgAsValue
