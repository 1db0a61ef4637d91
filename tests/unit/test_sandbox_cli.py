"""The sandbox CLI is generated from SandboxSettings: every field is an option, documented, round-tripping."""

from __future__ import annotations

import dataclasses

from clearout_provider.sandbox import SandboxProcess
from clearout_provider.sandbox.cli import build_parser, settings_from_args
from clearout_provider.sandbox.faults import SWITCHES, Faults
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


def test_fault_switches_parse_from_the_command_line() -> None:
    argv = ["--clevertap-down-paths", "/1/upload, /1/subscribe", "--stuck-lists", "--instant-malformed",
            "0.5", "--progress-status-override", "weird_status", "--download-resets", "2"]  # fmt: skip
    assert settings_from_args(build_parser().parse_args(argv)) == SandboxSettings(
        clevertap_down_paths=("/1/upload", "/1/subscribe"),
        stuck_lists=True,
        instant_malformed=0.5,
        progress_status_override="weird_status",
        download_resets=2,
    )


def test_the_process_command_line_parses_back_into_its_settings() -> None:
    wanted = SandboxSettings(clevertap_down_paths=("/1/upload",), upload_without_list_id=True,
                             result_url_ttl=0.5, state_dir="/tmp/x")  # fmt: skip
    argv = SandboxProcess(wanted, port=1).command()[3:]
    assert settings_from_args(build_parser().parse_args(argv)) == wanted


def test_every_runtime_switch_is_a_setting_with_the_same_start_value() -> None:
    defaults = SandboxSettings()
    assert Faults.from_settings(defaults) == Faults()
    for name in SWITCHES:
        assert getattr(defaults, name) == getattr(Faults(), name), name
