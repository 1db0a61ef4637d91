"""The sandbox CLI is generated from SandboxSettings: every field is an option, documented, round-tripping."""

from __future__ import annotations

import dataclasses

from clearout_provider.sandbox.cli import build_parser, settings_from_args
from clearout_provider.sandbox.settings import SandboxSettings


def test_every_setting_is_an_option_with_its_field_docstring_as_help() -> None:
    actions = {a.dest: a for a in build_parser()._actions}
    for field in dataclasses.fields(SandboxSettings):
        action = actions[field.name]
        assert action.help and len(action.help) > 10, f"--{field.name.replace('_', '-')} has no help"
    assert "(Clearout's plans: 10..400 per minute)" in actions["rpm"].help


def test_options_parse_back_into_the_same_settings() -> None:
    wanted = SandboxSettings(credits=7, rate_window=2.5, seed_contacts=12, state_dir="/tmp/x")
    args = build_parser().parse_args(
        ["--credits", "7", "--rate-window", "2.5", "--seed-contacts", "12", "--state-dir", "/tmp/x"]
    )
    assert settings_from_args(args) == wanted
