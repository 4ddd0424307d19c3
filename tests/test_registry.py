"""The model registry: per-provider, reference-counted, idempotent; kept in step with reloads."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from packyd import logs
from packyd.config import load_config
from packyd.registry import (
    CLAUDE_CODE_MODEL_IDS,
    PACKYCODE_PROVIDER,
    ModelInfo,
    ModelRegistry,
    attach,
    packycode_models,
)
from packyd.runtime import Runtime, RuntimeHolder
from packyd.services import Services


def info(model_id: str, provider: str = "p") -> ModelInfo:
    return ModelInfo(model_id, provider, model_id)


def test_register_is_idempotent_and_counted_per_provider() -> None:
    registry = ModelRegistry()
    assert registry.register("a", [info("m1"), info("m2")]) == ["m1", "m2"]
    assert registry.register("a", [info("m1"), info("m2")]) == []
    assert registry.refcount("m1") == 1
    registry.register("b", [info("m1")])
    assert registry.refcount("m1") == 2 and registry.providers_of("m1") == ["a", "b"]
    assert [m.id for m in registry.models()] == ["m1", "m2"]
    assert registry.unregister("a") == ["m1", "m2"]
    assert [m.id for m in registry.models()] == ["m1"], "still held by b"
    assert registry.unregister("a") == [], "unregistering twice is harmless"
    assert registry.unregister("b", ["m1"]) == ["m1"]
    assert registry.models() == [] and registry.refcount("m1") == 0


def test_replace_adds_and_drops_the_difference() -> None:
    registry = ModelRegistry()
    registry.replace("a", [info("m1"), info("m2")])
    added, removed = registry.replace("a", [info("m2"), info("m3")])
    assert (added, removed) == (["m3"], ["m1"])
    assert [m.id for m in registry.models("a")] == ["m2", "m3"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["register", "unregister", "replace"]), st.sampled_from(["a", "b", "c"]),
                          st.lists(st.sampled_from(["m1", "m2", "m3", "m4"]), max_size=4)), max_size=30))
def test_refcount_always_equals_the_providers_holding_a_model(operations: list) -> None:
    registry = ModelRegistry()
    held: dict[str, set[str]] = {}
    for operation, provider, ids in operations:
        if operation == "register":
            registry.register(provider, [info(i) for i in ids])
            held.setdefault(provider, set()).update(ids)
        elif operation == "unregister":
            registry.unregister(provider, ids)
            held.setdefault(provider, set()).difference_update(ids)
        else:
            registry.replace(provider, [info(i) for i in ids])
            held[provider] = set(ids)
    listed = [m.id for m in registry.models()]
    assert len(listed) == len(set(listed))
    assert set(listed) == set().union(*held.values()) if held else not listed
    for model_id in ["m1", "m2", "m3", "m4"]:
        assert registry.refcount(model_id) == sum(model_id in ids for ids in held.values())


def test_packycode_models_with_limits_and_claude_aliases(tmp_path: Path) -> None:
    load = load_config(None, env={})
    assert load.config is not None
    models = {m.id: m for m in packycode_models(load.config.packycode)}
    gpt5 = models["gpt-5"]
    assert (gpt5.provider, gpt5.context_window, gpt5.max_output_tokens) == (PACKYCODE_PROVIDER, 400_000, 128_000)
    assert models["codex-mini-latest"].context_window == 200_000
    # Claude Code's discovery keeps claude* ids only: every concrete id it sends is listed
    for claude_id in CLAUDE_CODE_MODEL_IDS:
        assert claude_id in models
    assert models["claude-opus-4-8"].alias_of == "gpt-5-codex(high)"
    assert models["claude-haiku-4-5-20251001"].alias_of == "gpt-5-codex-mini(low)"
    assert models["claude-sonnet-4-5"].alias_of == "gpt-5-codex(medium)"


def test_model_map_literal_names_and_first_match(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  models: [gpt-5.1-codex]\n  model-map:\n"
                      "    claude-opus-4-8: gpt-5.1-codex(xhigh)\n    'claude-*': gpt-5.1-codex(low)\n")
    load = load_config(str(config), env={})
    assert load.config is not None
    models = {m.id: m for m in packycode_models(load.config.packycode)}
    assert models["claude-opus-4-8"].alias_of == "gpt-5.1-codex(xhigh)", "the first matching entry wins"
    assert models["claude-haiku-4-5"].alias_of == "gpt-5.1-codex(low)"
    assert list(models)[0] == "gpt-5.1-codex"


def _runtime(tmp_path: Path, text: str, generation: int) -> Runtime:
    config = tmp_path / f"config-{generation}.yaml"
    config.write_text(text)
    return Runtime(load=load_config(str(config), env={}), generation=generation)


def test_reload_hook_registers_once_and_unregisters_when_unusable(tmp_path: Path) -> None:
    usable = "packycode:\n  credentials:\n    openai-api-key: sk-registry-test-0001\n"
    holder = RuntimeHolder(_runtime(tmp_path, usable, 1))
    services = Services(holder=holder, version="test")
    buffer = io.StringIO()
    logs.configure("info", stream=buffer, timestamps=False)
    try:
        registry = attach(services)
        expected = [m.id for m in packycode_models(holder.current.config.packycode)]
        for generation in range(2, 12):
            holder.swap(_runtime(tmp_path, usable, generation))
        assert [m.id for m in registry.models()] == expected
        assert all(registry.refcount(model_id) == 1 for model_id in expected)
        holder.swap(_runtime(tmp_path, usable + "  enabled: false\n", 12))
        assert registry.models() == []
        holder.swap(_runtime(tmp_path, "packycode: {}\n", 13))  # enabled but no key: unusable
        assert registry.models() == []
        holder.swap(_runtime(tmp_path, usable + "  models: [gpt-5]\n", 14))
        assert [m.id for m in registry.models()][0] == "gpt-5" and "gpt-5-codex" not in \
            [m.id for m in registry.models()]
    finally:
        logs.configure("info", stream=sys.stderr)
    audits = [line for line in buffer.getvalue().splitlines() if "action=models_registered" in line]
    # one at start, one for the disable, one for coming back; unchanged reloads stay quiet
    assert len(audits) == 3, audits
    assert f"removed={len(expected)}" in audits[1] and "reason=" in audits[1]
