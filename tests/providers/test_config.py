"""The [providers.*] and [models] config models: presets, key variables, validation errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.providers.config import (
    ModelsConfig,
    ProviderConfig,
    check_model_refs,
    split_model_ref,
)


@pytest.mark.parametrize(
    ("preset", "base_url", "local", "key_envs"),
    [
        ("openai", "https://api.openai.com/v1", False, ["OPENAI_API_KEY"]),
        ("openrouter", "https://openrouter.ai/api/v1", False, ["OPENROUTER_API_KEY"]),
        ("ollama", "http://127.0.0.1:11434/v1", True, []),
        ("vllm", "http://127.0.0.1:8000/v1", True, []),
        ("llamacpp", "http://127.0.0.1:8080/v1", True, []),
        ("lmstudio", "http://127.0.0.1:1234/v1", True, []),
    ],
)
def test_presets_resolve(preset: str, base_url: str, local: bool, key_envs: list[str]) -> None:
    config = ProviderConfig(preset=preset)  # type: ignore[arg-type]

    assert config.resolved_base_url() == base_url
    assert config.is_local() is local
    assert config.probes_health() is local  # on for local servers, off for paid APIs
    assert [name for _, name in config.key_env_names()] == key_envs


def test_type_defaults_and_overrides() -> None:
    claude = ProviderConfig(type="anthropic")
    assert claude.resolved_base_url() == "https://api.anthropic.com"
    assert claude.key_env_names() == [("api_key_env", "ANTHROPIC_API_KEY")]

    moved = ProviderConfig(preset="ollama", base_url="http://gpu-box:11434/v1/")
    assert moved.resolved_base_url() == "http://gpu-box:11434/v1"
    assert not moved.is_local()
    assert moved.key_env_names() == []  # an unknown server may need no key

    forced = ProviderConfig(preset="openrouter", health_probe=True)
    assert forced.probes_health()


def test_several_keys_in_rotation_order() -> None:
    config = ProviderConfig(api_key_env="MAIN", api_keys_env=["SPARE_1", "SPARE_2"])

    assert config.key_env_names() == [
        ("api_key_env", "MAIN"),
        ("api_keys_env[0]", "SPARE_1"),
        ("api_keys_env[1]", "SPARE_2"),
    ]


@pytest.mark.parametrize("field", ["api_key_env", "api_keys_env"])
def test_a_key_value_where_a_variable_name_belongs_is_refused_without_echoing_it(
    field: str,
) -> None:
    secret = "sk-proj-AbCdEf0123456789"
    value: object = secret if field == "api_key_env" else [secret]

    with pytest.raises(ValidationError) as caught:
        ProviderConfig(**{field: value})  # type: ignore[arg-type]

    message = caught.value.errors()[0]["msg"]
    assert "name of the environment variable" in message
    assert secret not in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"preset": "ollama", "type": "anthropic"}, "set type = 'openai'"),
        ({"preset": "groq"}, "preset"),
        ({"base_url": "ftp://example.org"}, "http:// or https://"),
        ({"first_token_timeout_s": 0}, "greater than 0"),
        ({"api_key": "sk-123"}, "Extra inputs are not permitted"),
    ],
)
def test_provider_validation_errors(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ProviderConfig(**data)  # type: ignore[arg-type]
    assert expected in str(caught.value)


def test_model_string_without_provider_names_the_string() -> None:
    with pytest.raises(ValidationError) as caught:
        ModelsConfig(chat=["openai:gpt-4o", "gpt-4o-mini"])
    assert "'gpt-4o-mini' must be 'provider:model'" in str(caught.value)


def test_route_without_provider_and_empty_route_are_refused() -> None:
    with pytest.raises(ValidationError, match="'llama3' must be 'provider:model'"):
        ModelsConfig(chat=["a:b"], routes={"cheap": ["llama3"]})
    with pytest.raises(ValidationError, match="needs at least one"):
        ModelsConfig(chat=["a:b"], routes={"cheap": []})
    with pytest.raises(ValidationError, match="compaction"):
        ModelsConfig(chat=["a:b"], routes={"compation": ["a:b"]})  # type: ignore[dict-item]


def test_chain_naming_an_unknown_provider_names_the_model_string() -> None:
    with pytest.raises(ValueError) as caught:
        check_model_refs(
            {"openai": ProviderConfig(preset="openai")},
            ModelsConfig(chat=["openai:gpt-4o"], routes={"compaction": ["olama:qwen3"]}),
        )
    message = str(caught.value)
    assert "models.routes.compaction: 'olama:qwen3' names provider 'olama'" in message
    assert "configured: openai" in message


def test_model_part_may_contain_colons_and_routes_fall_back_to_chat() -> None:
    models = ModelsConfig(chat=["local:llama3.1:8b"], routes={"cheap": ["local:qwen3:0.6b"]})
    check_model_refs({"local": ProviderConfig(preset="ollama")}, models)

    assert split_model_ref("local:llama3.1:8b") == ("local", "llama3.1:8b")
    assert models.chain_for("cheap") == ["local:qwen3:0.6b"]
    assert models.chain_for("compaction") == ["local:llama3.1:8b"]
    assert models.chain_for("anything-else") == ["local:llama3.1:8b"]


def test_cooldown_cap_below_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_cooldown_s"):
        ModelsConfig(chat=["a:b"], base_cooldown_s=60, max_cooldown_s=30)
