"""``clearout-sandbox --host 127.0.0.1 --port 8765 [--credits N --rpm N ...]``.

Options are generated from :class:`~clearout_provider.sandbox.settings.SandboxSettings` so the CLI and
the dataclass cannot drift apart; each option's help is the docstring under its field (a list-valued
field, such as ``--clevertap-down-paths``, takes its items comma-separated). Options marked "runtime
switch" can also be changed while the server runs, through ``POST /_sandbox/faults``.

A ``--state-dir`` holding state the sandbox cannot resume from stops it at start-up with exit code 2
and a message naming the file, instead of a traceback.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import sys
import typing
from collections.abc import Callable
from typing import Any

from clearout_provider.sandbox.faults import parse_paths
from clearout_provider.sandbox.settings import SandboxSettings
from clearout_provider.sandbox.state_files import SandboxStateError

#: How the command line's text becomes a field value, by the field's type (anything else stays text).
_CASTERS: dict[object, Callable[[str], Any]] = {
    int: int,
    float: float,
    str: str,
    tuple[str, ...]: parse_paths,
}


def _field_docs() -> dict[str, str]:
    """The docstring written under each settings field, read from the dataclass's source."""
    body = ast.parse(inspect.getsource(SandboxSettings)).body[0].body  # type: ignore[attr-defined]
    return {
        node.target.id: " ".join(doc.value.value.split())
        for node, doc in itertools.pairwise(body)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(doc, ast.Expr)
        and isinstance(doc.value, ast.Constant)
        and isinstance(doc.value.value, str)
    }


def build_parser() -> argparse.ArgumentParser:
    """One option per settings field, typed and defaulted from the dataclass."""
    parser = argparse.ArgumentParser(
        prog="clearout-sandbox",
        description="Local emulator of the Clearout, CleverTap and Mail.so APIs for demos and tests.",
        epilog=(
            'Options marked "runtime switch" can also be changed while the server runs: GET/POST/DELETE '
            "/_sandbox/faults (JSON object of switches; Clearout token in the Authorization header)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument("--port", type=int, default=8765, help="Port to listen on.")
    parser.add_argument("--log-level", default="warning", help="uvicorn's log level.")
    hints = typing.get_type_hints(SandboxSettings)
    docs = _field_docs()
    for field in dataclasses.fields(SandboxSettings):
        kind = hints[field.name]
        option = "--" + field.name.replace("_", "-")
        doc = docs.get(field.name)
        if kind is bool:
            parser.add_argument(
                option, action=argparse.BooleanOptionalAction, default=field.default, help=doc
            )
        else:
            parser.add_argument(option, type=_CASTERS.get(kind, str), default=field.default, help=doc)
    return parser


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    """Pick the settings fields out of parsed arguments."""
    names = {f.name for f in dataclasses.fields(SandboxSettings)}
    return SandboxSettings(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: list[str] | None = None) -> None:
    """Parse options and serve the sandbox with uvicorn until interrupted."""
    import uvicorn

    from clearout_provider.sandbox.app import create_app

    args = build_parser().parse_args(argv)
    try:
        app = create_app(settings_from_args(args))
    except SandboxStateError as exc:
        print(f"clearout-sandbox: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
