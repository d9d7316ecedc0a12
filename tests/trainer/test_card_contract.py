"""Cards the trainer writes are valid under the shared contract, and the server reads them as typed objects."""

from __future__ import annotations

from contract.card import SCHEMA_VERSION, load_card, validate
from service.repository.layout import read_card


def test_a_card_written_by_the_trainer_validates(iris_run, digits_run):
    for run in (iris_run, digits_run):
        validate(run.card, run.path)  # raises CardError naming the field otherwise
        card = load_card(run.path)
        assert (card.schema_version, card.name, card.version) == (SCHEMA_VERSION, run.card["name"], run.card["version"])
        published = {name for name, entry in run.card["variants"].items() if entry["published"]}
        assert card.published_variants == published and "savedmodel" in published
        assert read_card(run.path) == card  # what the server's loader reads
