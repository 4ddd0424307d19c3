"""The Codex CLI files as a settings source: what is imported, from where, and what is refused.

Each test writes a real ``$CODEX_HOME`` (config.toml + auth.json) and reads it the way every
start and reload does (``load_config`` with the Codex layer), then checks values, the source
label and line each setting carries, and the problems a user would see.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from packyd.config import load_config
from packyd.config.codex import read_codex, read_codex_layer

PACKY_KEY = "sk-packy-codex-auth-0000aaaa1111"

#: Packycode's documented Codex CLI setup (reference/codex-cli.md §6), base_url pointing home.
DOCUMENTED = """\
model_provider = "packycode"
model = "gpt-5"
model_reasoning_effort = "high"
disable_response_storage = true

[model_providers.packycode]
name = "packycode"
base_url = "http://127.0.0.1:9/v1"
wire_api = "responses"
requires_openai_auth = true
"""


def codex_home(tmp_path: Path, toml: str | None = DOCUMENTED, auth: object = None) -> Path:
    home = tmp_path / "codex"
    home.mkdir(exist_ok=True)
    if toml is not None:
        (home / "config.toml").write_text(textwrap.dedent(toml))
    if auth is not None:
        (home / "auth.json").write_text(auth if isinstance(auth, str) else json.dumps(auth))
    return home


def test_documented_setup_is_imported_with_file_and_line(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": PACKY_KEY})
    load = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    assert load.ok and load.config is not None
    packycode = load.config.packycode
    assert packycode.base_url == "http://127.0.0.1:9/v1"
    assert packycode.defaults.model == "gpt-5"
    assert packycode.defaults.model_reasoning_effort == "high"
    assert packycode.privacy.disable_response_storage is True
    assert load.packycode_usable and load.packycode_key == PACKY_KEY
    assert load.packycode_key_source == "codex-cli:auth.json"
    assert load.sources["packycode.defaults.model"] == "codex-cli:config.toml:2"
    assert load.sources["packycode.defaults.model-reasoning-effort"] == "codex-cli:config.toml:3"
    assert load.sources["packycode.privacy.disable-response-storage"] == "codex-cli:config.toml:4"
    assert load.sources["packycode.base-url"] == "codex-cli:config.toml:8"
    assert load.sources["packycode.wire-api"] == "codex-cli:config.toml:9"
    assert load.sources["packycode.requires-openai-auth"] == "codex-cli:config.toml:10"
    assert load.sources["packycode.identity"] == "default"
    assert not load.problems


def test_home_defaults_to_dot_codex_under_home(tmp_path: Path) -> None:
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "config.toml").write_text(DOCUMENTED)
    result = read_codex({"HOME": str(tmp_path)})
    assert result.home == str(tmp_path / ".codex")
    assert result.values["packycode.defaults.model"][0] == "gpt-5"


def test_profile_overrides_top_level_keys(tmp_path: Path) -> None:
    home = codex_home(tmp_path, DOCUMENTED.replace('model = "gpt-5"\n', 'model = "gpt-5"\nprofile = "fast"\n')
                      + '\n[profiles.fast]\nmodel = "gpt-5-codex-mini"\nmodel_reasoning_effort = "medium"\n'
                        'model_verbosity = "low"\n')
    result = read_codex({"CODEX_HOME": str(home)})
    model, origin = result.values["packycode.defaults.model"]
    assert model == "gpt-5-codex-mini" and origin.label == "codex-cli:config.toml:14"
    assert result.values["packycode.defaults.model-reasoning-effort"][0] == "medium"
    assert result.values["packycode.defaults.model-verbosity"][0] == "low"
    # keys the profile leaves alone still come from the top level
    assert result.values["packycode.privacy.disable-response-storage"][1].label == "codex-cli:config.toml:5"


def test_missing_profile_is_reported_and_top_level_used(tmp_path: Path) -> None:
    home = codex_home(tmp_path, 'profile = "nope"\n' + DOCUMENTED)
    result = read_codex({"CODEX_HOME": str(home)})
    assert result.values["packycode.defaults.model"][0] == "gpt-5"
    [problem] = result.problems
    assert problem.path == "profile" and "nope" in problem.what and problem.where.endswith("config.toml:1")


@pytest.mark.parametrize("toml", ['model = "gpt-5"\n', 'model_provider = "openai"\nmodel = "o3"\n'],
                         ids=["default-provider", "explicit-openai"])
def test_builtin_openai_provider_imports_nothing(tmp_path: Path, toml: str) -> None:
    home = codex_home(tmp_path, toml, auth={"OPENAI_API_KEY": "sk-real-openai-key-123456"})
    load = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    assert load.packycode_key is None, "an OpenAI key must never be sent to a relay"
    assert all(source == "default" for source in load.sources.values())
    [problem] = [p for p in load.problems if p.path == "model_provider"]
    assert problem.severity == "warning"
    assert "built-in provider 'openai'" in problem.what and 'model_provider = "packycode"' in problem.fix


def test_provider_without_table_is_reported(tmp_path: Path) -> None:
    home = codex_home(tmp_path, 'model_provider = "packy"\nmodel = "gpt-5"\n')
    result = read_codex({"CODEX_HOME": str(home)})
    assert not result.values
    [problem] = result.problems
    assert problem.where.endswith("config.toml:1") and "[model_providers.packy]" in problem.fix


def test_env_key_wins_over_auth_json(tmp_path: Path) -> None:
    toml = DOCUMENTED + 'env_key = "PACKY_KEY"\n'
    home = codex_home(tmp_path, toml, auth={"OPENAI_API_KEY": PACKY_KEY})
    env = {"CODEX_HOME": str(home), "PACKY_KEY": "sk-from-env-key-var-9999"}
    load = load_config(None, env=env, codex_layer=read_codex_layer)
    assert load.packycode_key == "sk-from-env-key-var-9999"
    assert load.packycode_key_source == "codex-cli:env_key=PACKY_KEY"
    # the variable not set: auth.json, as Codex 0.46 does, with a note saying so
    without = read_codex({"CODEX_HOME": str(home)})
    assert without.values["packycode.credentials.openai-api-key"][0] == PACKY_KEY
    assert any("PACKY_KEY, which is not set" in note for note in without.notes)


def test_env_key_alone_requires_a_key(tmp_path: Path) -> None:
    toml = DOCUMENTED.replace("requires_openai_auth = true\n", 'env_key = "PACKY_KEY"\n')
    result = read_codex({"CODEX_HOME": str(codex_home(tmp_path, toml)), "PACKY_KEY": "sk-x-0000000000001"})
    value, origin = result.values["packycode.requires-openai-auth"]
    assert value is True and origin.label == "codex-cli:config.toml:10"


def test_experimental_bearer_token(tmp_path: Path) -> None:
    toml = DOCUMENTED + 'experimental_bearer_token = "sk-bearer-token-77778888"\n'
    home = codex_home(tmp_path, toml, auth={"OPENAI_API_KEY": PACKY_KEY})
    load = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    assert load.packycode_key == "sk-bearer-token-77778888"
    assert load.packycode_key_source == "codex-cli:config.toml:11"


def test_chatgpt_login_is_not_a_key(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": None, "tokens": {"access_token": "eyJ.x.y"}})
    load = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer, require_packycode=True)
    assert not load.ok and load.packycode_key is None
    [chatgpt] = [p for p in load.problems if p.path == "OPENAI_API_KEY"]
    assert "ChatGPT login" in chatgpt.what and "codex login --with-api-key" in chatgpt.fix
    [missing] = [p for p in load.errors if p.path == "packycode.credentials"]
    for place in ("openai-api-key", "PACKYD_PACKYCODE_API_KEY", "auth.json", "packycode-api-key"):
        assert place in missing.fix


def test_malformed_toml_is_a_problem_with_line_not_a_crash(tmp_path: Path) -> None:
    home = codex_home(tmp_path, 'model_provider = "packycode"\nmodel = gpt-5\n', auth={"OPENAI_API_KEY": PACKY_KEY})
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  import-codex-cli: true\n")
    load = load_config(str(config), env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    [problem] = [p for p in load.problems if p.path == "(file)"]
    assert problem.where == f"{home}/config.toml:2"
    assert "not valid TOML" in problem.what and problem.severity == "error"
    assert not load.ok, "asked to import a broken file: refuse, as for a broken config.yaml"
    # Read only because there is no config file at all: the same problem is a warning.
    implicit = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    assert implicit.ok and [p.severity for p in implicit.problems if p.path == "(file)"] == ["warning"]


def test_malformed_auth_json_names_the_line_and_never_the_text(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth='{\n  "OPENAI_API_KEY": "sk-secret-looking-1234567",\n}\n')
    result = read_codex({"CODEX_HOME": str(home)})
    [problem] = result.problems
    assert problem.where == f"{home}/auth.json:3" and "not valid JSON" in problem.what
    assert "sk-secret" not in str(problem)
    assert "packycode.credentials.openai-api-key" not in result.values


def test_unreadable_and_missing_codex_home(tmp_path: Path) -> None:
    missing = read_codex({"CODEX_HOME": str(tmp_path / "nowhere")})
    assert [p.path for p in missing.problems] == ["CODEX_HOME"]
    empty = read_codex({"HOME": str(tmp_path)})  # no ~/.codex at all: silently nothing
    assert not empty.values and not empty.problems and not empty.found


def test_headers_query_params_and_numbers(tmp_path: Path) -> None:
    toml = DOCUMENTED + textwrap.dedent("""\
        http_headers = { "X-Team" = "blue" }
        env_http_headers = { "X-Org" = "ORG_VAR", "X-Missing" = "UNSET_VAR" }
        query_params = { api-version = "2025-04-01" }
        request_max_retries = 2
        stream_idle_timeout_ms = 45000
        stream_max_retries = 9
    """)
    result = read_codex({"CODEX_HOME": str(codex_home(tmp_path, toml)), "ORG_VAR": "acme"})
    headers, origin = result.values["packycode.headers"]
    assert headers == {"X-Team": "blue", "X-Org": "acme"} and origin.label == "codex-cli:config.toml:11"
    assert result.values["packycode.retries.max-attempts"][0] == 3
    assert result.values["packycode.timeouts.idle"][0] == 45.0
    [query] = result.problems
    assert query.severity == "warning" and "query_params" in query.path and query.where.endswith(":13")
    assert any("X-Missing" in note for note in result.notes)
    assert any("stream_max_retries" in note for note in result.notes)
    load = load_config(None, env={"CODEX_HOME": str(codex_home(tmp_path, toml)), "ORG_VAR": "acme"},
                       codex_layer=read_codex_layer)
    assert load.config is not None and load.config.packycode.headers == (("X-Team", "blue"), ("X-Org", "acme"))
    assert load.config.packycode.retries.max_attempts == 3 and load.config.packycode.timeouts.idle == 45.0


def test_chat_wire_api_is_refused_at_the_toml_line(tmp_path: Path) -> None:
    home = codex_home(tmp_path, DOCUMENTED.replace('"responses"', '"chat"'), auth={"OPENAI_API_KEY": PACKY_KEY})
    load = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer, require_packycode=True)
    [problem] = load.errors
    assert problem.where == f"{home}/config.toml:9" and problem.path == "packycode.wire-api"
    assert "responses" in problem.fix


def test_codex_files_are_read_only_when_asked(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": PACKY_KEY})
    env = {"CODEX_HOME": str(home)}
    config = tmp_path / "config.yaml"
    config.write_text("port: 8400\n")
    plain = load_config(str(config), env=env, codex_layer=read_codex_layer)
    assert plain.packycode_key is None and plain.sources["packycode.base-url"] == "default"
    required = load_config(str(config), env=env, codex_layer=read_codex_layer, require_packycode=True)
    assert required.packycode_key == PACKY_KEY
    config.write_text("port: 8400\npackycode:\n  import-codex-cli: true\n")
    asked = load_config(str(config), env=env, codex_layer=read_codex_layer)
    assert asked.packycode_key == PACKY_KEY and asked.sources["packycode.base-url"] == "codex-cli:config.toml:8"
    by_env = load_config(str(tmp_path / "config.yaml"), env={**env, "PACKYD_PACKYCODE_IMPORT_CODEX_CLI": "yes"},
                         codex_layer=read_codex_layer)
    assert by_env.packycode_key == PACKY_KEY


def test_response_storage_false_is_accepted_but_reported(tmp_path: Path) -> None:
    home = codex_home(tmp_path, DOCUMENTED.replace("disable_response_storage = true",
                                                   "disable_response_storage = false"),
                      auth={"OPENAI_API_KEY": PACKY_KEY})
    load = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    assert load.ok
    [note] = [p for p in load.problems if p.path == "packycode.privacy.disable-response-storage"]
    assert note.severity == "warning" and note.where == f"{home}/config.toml:4" and "store:false" in note.what


def test_effort_none_from_newer_codex_cli_is_accepted(tmp_path: Path) -> None:
    home = codex_home(tmp_path, DOCUMENTED.replace('"high"', '"none"'), {"OPENAI_API_KEY": PACKY_KEY})
    result = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    assert result.ok and result.config is not None
    assert result.config.packycode.defaults.model_reasoning_effort == "none"


def test_a_bad_value_in_codex_files_read_implicitly_is_a_warning(tmp_path: Path) -> None:
    """With no config file packyd reads ~/.codex on its own initiative: a value it cannot use
    must not stop it from starting; with --packycode (the user asked for it) it is an error."""
    toml = DOCUMENTED.replace("disable_response_storage = true\n",
                              'disable_response_storage = true\nmodel_reasoning_summary = "loud"\n')
    home = codex_home(tmp_path, toml, {"OPENAI_API_KEY": PACKY_KEY})
    env = {"CODEX_HOME": str(home)}
    implicit = load_config(None, env=env, codex_layer=read_codex_layer)
    assert implicit.ok and implicit.config is not None and implicit.packycode_usable
    assert implicit.config.packycode.defaults.model_reasoning_summary == "auto"
    assert implicit.sources["packycode.defaults.model-reasoning-summary"] == "default"
    [warning] = [p for p in implicit.warnings if p.path == "packycode.defaults.model-reasoning-summary"]
    assert warning.where.endswith("config.toml:5") and "using the default meanwhile" in warning.fix
    required = load_config(None, env=env, codex_layer=read_codex_layer, require_packycode=True)
    assert not required.ok
    assert [p.path for p in required.errors] == ["packycode.defaults.model-reasoning-summary"]
