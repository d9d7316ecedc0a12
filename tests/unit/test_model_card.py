"""The model card contract: the schema refuses broken cards by file and field, and the server refuses them at load."""

from __future__ import annotations

import asyncio
import json

import pytest

from contract.card import SCHEMA_VERSION, CardError, ModelCard, load_card, new_card, validate, variant_entry, write_card
from contract.layout import CARD_FILE, KNOWN_VARIANTS, is_model_name, variant_relpath
from tests.unit.manager_fakes import WAIT_S, FakeFactory, make_manager, publish, states


def _card(**changes) -> dict:
    card = new_card(
        "m",
        1,
        task="classification",
        signature="serving_default",
        variants={"savedmodel": variant_entry("savedmodel", published=True)},
        samples=({"x": [[1.0, 2.0, 3.0]]}, {"y": [[2.0, 4.0, 6.0]]}),
    )
    card.update(changes)
    return card


def _load_error(tmp_path, card: dict | None) -> tuple[dict[int, str], str | None]:
    """Publish m/1 with `card` (None: no card file) and load it through the real ModelManager."""
    version_dir = publish(tmp_path, "m", 1)
    if card is not None:
        (version_dir / CARD_FILE).write_text(json.dumps(card))

    async def scenario():
        manager = make_manager(tmp_path, FakeFactory())
        await manager.reconcile(wait=True)
        result = states(manager, "m"), manager.versions_of("m")[0].error
        await manager.stop()
        return result

    return asyncio.run(asyncio.wait_for(scenario(), WAIT_S))


def test_a_built_card_round_trips_typed(tmp_path):
    path = write_card(tmp_path, _card())
    card = load_card(tmp_path)
    assert path == tmp_path / CARD_FILE
    assert (card.schema_version, card.name, card.version, card.task) == (SCHEMA_VERSION, "m", 1, "classification")
    assert card.signature_name == "serving_default" and card.published_variants == {"savedmodel"}
    assert card.samples.inputs == {"x": [[1.0, 2.0, 3.0]]}


@pytest.mark.parametrize("field", ["schema_version", "name", "version"])
def test_a_card_missing_a_required_field_is_refused_at_load_naming_file_and_field(tmp_path, field):
    card = _card()
    del card[field]
    status, error = _load_error(tmp_path, card)
    assert status == {1: "END"}
    assert f"{tmp_path / 'm' / '1' / CARD_FILE}: model card field '{field}'" in error
    assert f"'{field}' is a required property" in error


def test_a_card_of_an_unknown_major_schema_version_is_refused_at_load(tmp_path):
    status, error = _load_error(tmp_path, _card(schema_version=99))
    assert status == {1: "END"}
    assert f"{tmp_path / 'm' / '1' / CARD_FILE}: model card field 'schema_version'" in error
    assert "major version 99 is not supported" in error


def test_a_nested_field_of_the_wrong_type_is_named_by_its_path(tmp_path):
    card = _card()
    card["variants"]["savedmodel"]["published"] = "yes"
    status, error = _load_error(tmp_path, card)
    assert status == {1: "END"} and "field 'variants.savedmodel.published'" in error and "'yes'" in error


def test_a_version_without_a_card_still_loads(tmp_path):
    assert _load_error(tmp_path, None) == ({1: "AVAILABLE"}, None)


def test_a_valid_card_loads(tmp_path):
    assert _load_error(tmp_path, _card()) == ({1: "AVAILABLE"}, None)


def test_fields_of_a_newer_minor_version_are_accepted():
    validate(_card(explainer={"method": "shap"}))


def test_the_trainers_optional_sections_validate():
    sections = {
        "phases": {"head_only": 0.8, "fine_tuned": 0.9},
        "notes": ["base model: digits"],
        "training": {"epochs_run": 3},
        "pruning": {"target_sparsity": 0.5},
        "num_classes": 3,
    }
    validate(_card(**sections))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "a..b"}, "name"),
        ({"version": 0}, "version"),
        ({"task": "ranking"}, "task"),
        ({"variants": {"int4": {"published": True}}}, "variants"),
        ({"samples": {"inputs": {}}}, "samples.outputs"),
        ({"signature": {"inputs": {}}}, "signature.name"),
    ],
)
def test_schema_violations_name_the_field(changes, field):
    with pytest.raises(CardError) as caught:
        validate(_card(**changes), "card.json")
    assert caught.value.field == field and str(caught.value).startswith(f"card.json: model card field '{field}'")


def test_write_card_refuses_an_invalid_card_and_writes_nothing(tmp_path):
    with pytest.raises(CardError, match="field 'version'"):
        write_card(tmp_path, _card(version="1"))
    assert not (tmp_path / CARD_FILE).exists()


def test_an_unreadable_card_is_refused_naming_the_file(tmp_path):
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(CardError, match=f"{CARD_FILE}: model card: unreadable"):
        load_card(tmp_path)


def test_layout_rules_come_from_the_schema():
    assert KNOWN_VARIANTS == ("savedmodel", "float32", "float16", "dynamic", "int8")
    assert variant_relpath("int8") == "tflite/int8.tflite" and variant_relpath("savedmodel") == "."
    assert is_model_name("a.b-c_d") and not is_model_name("a..b") and not is_model_name("-a")
    assert ModelCard.from_dict(_card()).name == "m"
