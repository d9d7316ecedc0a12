"""The on-disk contract between the trainer (models/) and the server (service/), written once.

`contract/model_card.schema.json` is the language-neutral source: the model card's JSON Schema,
with the repository layout under its `x-batchwise-layout` keyword. `contract.layout` and
`contract.card` are the Python readers both sides import; neither side imports the other.
See docs/model-card.md.
"""
