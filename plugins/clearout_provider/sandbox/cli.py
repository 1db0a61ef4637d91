"""``clearout-sandbox --host 127.0.0.1 --port 8765 [--credits N --rpm N ...]``.

Options are generated from :class:`~clearout_provider.sandbox.settings.SandboxSettings` so the CLI and
the dataclass cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from clearout_provider.sandbox.settings import SandboxSettings


def build_parser() -> argparse.ArgumentParser:
    """One option per settings field, typed and defaulted from the dataclass."""
    parser = argparse.ArgumentParser(
        prog="clearout-sandbox",
        description="Local emulator of the Clearout, CleverTap and Mail.so APIs for demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--log-level", default="warning")
    hints = typing.get_type_hints(SandboxSettings)
    for field in dataclasses.fields(SandboxSettings):
        kind = hints[field.name]
        option = "--" + field.name.replace("_", "-")
        doc = (field.metadata or {}).get("help")
        if kind is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=field.default, help=doc)
        else:
            caster = kind if kind in (int, float, str) else str
            parser.add_argument(option, type=caster, default=field.default, help=doc)
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
    app = create_app(settings_from_args(args))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
