"""Model and effort resolution (DESIGN §5)."""

from __future__ import annotations

import pytest

from packyd.translate.messages import OutputConfig, Thinking
from packyd.translate.models import clamp_effort, effort_from_budget, parse_model_spec, resolve_model, strip_context_suffix
from packyd.translate.settings import ModelRoute, TranslationSettings

S = TranslationSettings(
    default_model="gpt-5",
    default_effort="medium",
    default_summary="auto",
    model_map=(
        ModelRoute("claude-*opus*", "gpt-5-codex", "high"),
        ModelRoute("claude-*sonnet*", "gpt-5.2", None),
        ModelRoute("CLAUDE-*HAIKU*", "gpt-5-mini", "low"),
        ModelRoute("my-alias", "gpt-5.5(xhigh)", None),
    ),
    model_efforts=(("gpt-5", ("minimal", "low", "medium", "high")), ("gpt-5-codex*", ("low", "medium", "high"))),
)


def test_spec_and_suffix_parsing() -> None:
    assert parse_model_spec("gpt-5-codex(high)") == ("gpt-5-codex", "high")
    assert parse_model_spec("gpt-5 (max)") == ("gpt-5", "xhigh")
    assert parse_model_spec("odd(name)") == ("odd(name)", None)
    assert strip_context_suffix("claude-opus-4-8[1m]") == "claude-opus-4-8"
    assert strip_context_suffix("gpt-5[1M]") == "gpt-5"


def test_map_entry_gives_model_and_effort() -> None:
    c = resolve_model("claude-opus-4-8", S, Thinking("adaptive"), OutputConfig(effort="low"))
    assert (c.model, c.effort, c.summary, c.requested) == ("gpt-5-codex", "high", "auto", "claude-opus-4-8")


def test_one_m_suffix_is_stripped_before_matching_case_insensitively() -> None:
    assert resolve_model("claude-opus-4-8[1m]", S).model == "gpt-5-codex"
    assert resolve_model("Claude-Haiku-4-5-20251001", S).model == "gpt-5-mini"


def test_suffix_wins_over_everything() -> None:
    c = resolve_model("claude-opus-4-8(low)", S, Thinking("enabled", 30000), OutputConfig(effort="high"))
    assert (c.model, c.effort) == ("gpt-5-codex", "low")
    assert resolve_model("gpt-5-codex(high)[1m]", S).effort == "high"


def test_map_value_may_carry_an_effort_suffix() -> None:
    c = resolve_model("my-alias", S)
    assert (c.model, c.effort) == ("gpt-5.5", "xhigh")


@pytest.mark.parametrize(
    "thinking, output, effort",
    [
        (Thinking("enabled", 1024), None, "low"),
        (Thinking("enabled", 4000), None, "medium"),
        (Thinking("enabled", 16000), None, "high"),
        (Thinking("enabled", 31999), None, "xhigh"),
        (Thinking("adaptive"), OutputConfig(effort="high"), "high"),
        (Thinking("adaptive"), OutputConfig(effort="max"), "xhigh"),
        (None, OutputConfig(effort="low"), "low"),
        (Thinking("disabled"), OutputConfig(effort="high"), "minimal"),
        (Thinking("adaptive"), None, "medium"),
        (None, None, "medium"),
    ],
)
def test_client_hints_when_the_map_has_no_effort(thinking: Thinking | None, output: OutputConfig | None, effort: str) -> None:
    c = resolve_model("claude-sonnet-4-5", S, thinking, output)
    assert c.model == "gpt-5.2" and c.effort == effort


def test_unknown_names_go_to_the_default_model_and_upstream_names_pass() -> None:
    assert resolve_model("claude-mystery-9", S).model == "gpt-5"
    assert resolve_model("totally-unknown", S).model == "gpt-5"
    assert resolve_model("gpt-5.5", S).model == "gpt-5.5"
    assert resolve_model("o3", S).model == "o3"


def test_effort_is_clamped_to_the_model() -> None:
    assert resolve_model("gpt-5", S, Thinking("enabled", 31999)).effort == "high"
    assert resolve_model("gpt-5-codex", S, Thinking("disabled")).effort == "low"
    assert clamp_effort("unlisted-model", "xhigh", S) == "xhigh"
    assert clamp_effort("gpt-5", "medium", S) == "medium"


def test_summary_setting() -> None:
    assert resolve_model("gpt-5", TranslationSettings(default_summary="none")).summary is None
    assert resolve_model("gpt-5", TranslationSettings(default_summary="detailed")).summary == "detailed"
    assert resolve_model("gpt-5", S, Thinking("adaptive", display="omitted")).summary is None


def test_default_settings_serve_claude_code_side_calls() -> None:
    d = TranslationSettings()
    assert resolve_model("claude-haiku-4-5-20251001", d, Thinking("disabled")).model == "gpt-5-codex-mini"
    assert resolve_model("claude-opus-4-8", d).model == "gpt-5-codex"


def test_budget_bands() -> None:
    assert [effort_from_budget(b) for b in (0, 512, 513, 1024, 8192, 24576, 24577)] == [
        "minimal", "minimal", "low", "low", "medium", "high", "xhigh",
    ]
