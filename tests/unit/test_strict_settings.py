"""Strict settings: an unknown key from any source, at any level, is refused with the nearest valid key."""

from __future__ import annotations

import pytest

from service.settings import ModelSettings, Settings, load_settings
from service.settings_keys import UnknownSettingError


@pytest.fixture
def config(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "server.toml"
        path.write_text(text)
        return str(path)

    return write


def _refused(exc_info, key: str, nearest: str) -> None:
    message = str(exc_info.value)
    assert f"unknown setting {key!r}" in message and f"did you mean {nearest!r}" in message, message


def test_env_typo_in_a_section_is_refused(monkeypatch):
    monkeypatch.setenv("BATCHWISE_BATCHING__MAX_BATCH_SISE", "3")
    with pytest.raises(UnknownSettingError) as caught:
        load_settings([])
    _refused(caught, "batching.max_batch_sise", "batching.max_batch_size")
    assert "BATCHWISE_BATCHING__MAX_BATCH_SISE" in str(caught.value)


def test_env_typo_in_a_section_name_is_refused(monkeypatch):
    monkeypatch.setenv("BATCHWISE_BATCHNG__MAX_BATCH_SIZE", "3")
    with pytest.raises(UnknownSettingError) as caught:
        load_settings([])
    _refused(caught, "batchng", "batching")


def test_env_typo_in_a_per_model_override_is_refused(monkeypatch):
    monkeypatch.setenv("BATCHWISE_MODELS__DIGITS__BATCHING__MAX_BATCH_SISE", "3")
    with pytest.raises(UnknownSettingError) as caught:
        load_settings([])
    _refused(caught, "models.digits.batching.max_batch_sise", "models.digits.batching.max_batch_size")


def test_env_names_of_our_tools_are_left_alone(monkeypatch):
    monkeypatch.setenv("BATCHWISE_FUZZ_EXAMPLES", "10")
    monkeypatch.setenv("BATCHWISE_MODELS__DIGITS__VARIANT", "int8")
    assert load_settings([]).variant_for("digits") == "int8"


def test_toml_typo_in_a_section_is_refused(config):
    with pytest.raises(UnknownSettingError) as caught:
        load_settings(["--config-file", config("[batching]\nmax_batch_sise = 3\n")])
    _refused(caught, "batching.max_batch_sise", "batching.max_batch_size")
    assert "config file" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key", "nearest"),
    [
        ('[models.digits]\nvarient = "int8"\n', "models.digits.varient", "models.digits.variant"),
        ("[models.digits.batching]\nmax_batch_sise = 3\n", "models.digits.batching.max_batch_sise",
         "models.digits.batching.max_batch_size"),
        ("[sever]\nport = 1\n", "sever", "server"),
    ],
)  # fmt: skip
def test_toml_typos_at_every_level_are_refused(config, text, key, nearest):
    with pytest.raises(UnknownSettingError) as caught:
        load_settings(["--config-file", config(text)])
    _refused(caught, key, nearest)


def test_cli_typo_is_refused_with_the_nearest_flag():
    with pytest.raises(UnknownSettingError) as caught:
        load_settings(["--batching.max-batch-sise", "3"])
    _refused(caught, "batching.max_batch_sise", "--batching.max-batch-size")
    assert "command-line flag --batching.max-batch-sise" in str(caught.value)


def test_cli_boolean_negation_is_a_known_flag():
    assert not load_settings(["--no-batching.enabled"]).batching.enabled


def test_keyword_overrides_are_checked_too():
    with pytest.raises(ValueError, match=r"unknown setting 'runtime.tflite_thread'.*'runtime.tflite_threads'"):
        Settings(runtime={"tflite_thread": 2})


def test_per_model_batching_overrides_are_typed_and_merged(config):
    settings = load_settings(["--config-file", config("[models.m.batching]\nmax_batch_size = 8\n")])
    assert settings.models["m"].batching.max_batch_size == 8 and settings.models["m"].batching.enabled is None
    merged = settings.batching_for("m")
    assert (merged.max_batch_size, merged.batch_timeout_ms) == (8, settings.batching.batch_timeout_ms)
    assert settings.batching_for("other") == settings.batching


def test_an_invalid_per_model_override_stops_the_start(config):
    with pytest.raises(ValueError, match=r"models\.m\.batching .*max_batch_size: Input should be greater"):
        load_settings(["--config-file", config("[models.m.batching]\nmax_batch_size = 0\n")])
    with pytest.raises(ValueError, match=r"max_batch_size"):
        ModelSettings(batching={"max_batch_size": "many"})


def test_every_batching_field_can_be_overridden_per_model():
    overrides = ModelSettings().batching
    assert set(type(overrides).model_fields) == set(type(Settings().batching).model_fields)
