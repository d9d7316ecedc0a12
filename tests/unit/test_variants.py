"""Variant discovery, the selection paths, and the consistency guard against the model card."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from contract.card import ModelCard, new_card
from service.errors import ErrorCode, FailedPrecondition, ModelLoadError, NotFound
from service.repository.variants import (
    DEFAULT_FALLBACK_ORDER,
    check_consistency,
    choose_variants,
    discover_variants,
    require_variant,
    top1_agreement,
)
from service.runtime import devices
from service.runtime.tflite import TFLiteBackend
from tests.support.litert_models import build_litert_models

ALL = ("savedmodel", "float32", "float16", "dynamic", "int8")
GUARD = {"atol": 0.05, "min_top1_agreement": 0.9}


def _version(tmp_path, files):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def _card(**published):
    variants = {name: {"published": flag} for name, flag in published.items()}
    return ModelCard.from_dict(new_card("m", 1, task="classification", signature="serving_default", variants=variants))


# --- discovery ------------------------------------------------------------------------------------


def test_discovery_offers_files_the_card_publishes(tmp_path):
    version = _version(tmp_path, ["saved_model.pb", "tflite/int8.tflite", "tflite/float16.tflite", "tflite/x.tflite"])
    card = _card(savedmodel=True, int8=False, float16=True, dynamic=True)  # dynamic published but absent
    found = discover_variants(version, card)
    assert list(found) == ["savedmodel", "float16"]
    assert found["float16"] == version / "tflite" / "float16.tflite"
    assert found["savedmodel"] == version


def test_discovery_without_a_card_offers_every_present_file(tmp_path):
    version = _version(tmp_path, ["tflite/int8.tflite", "tflite/dynamic.tflite", "tflite/unknown.tflite"])
    assert list(discover_variants(version, None)) == ["dynamic", "int8"]


def test_savedmodel_needs_saved_model_pb_whatever_the_card_says(tmp_path):
    version = _version(tmp_path, ["tflite/float32.tflite"])
    assert list(discover_variants(version, _card(savedmodel=True, float32=True))) == ["float32"]


# --- selection ------------------------------------------------------------------------------------


def test_auto_on_a_gpu_node_with_tensorflow_prefers_the_savedmodel():
    order = choose_variants("auto", ALL, gpu_visible=True, tf_available=True)
    assert order == ["savedmodel", "int8", "dynamic", "float16", "float32"]


def test_auto_on_a_cpu_node_with_tensorflow_follows_the_fallback_order():
    assert choose_variants("auto", ALL, gpu_visible=False, tf_available=True) == list(DEFAULT_FALLBACK_ORDER)
    assert choose_variants("auto", ["savedmodel", "float16"], gpu_visible=False, tf_available=True) == [
        "float16",
        "savedmodel",
    ]


def test_auto_on_a_cpu_node_without_tensorflow_never_picks_the_savedmodel():
    order = choose_variants("auto", ["savedmodel", "dynamic"], gpu_visible=False, tf_available=False)
    assert order == ["dynamic"]
    # A visible GPU is useless without TensorFlow.
    tflite_only = ["int8", "dynamic", "float16", "float32"]
    assert choose_variants("auto", ALL, gpu_visible=True, tf_available=False) == tflite_only
    with pytest.raises(NotFound, match="TensorFlow not installed"):
        choose_variants("auto", ["savedmodel"], gpu_visible=False, tf_available=False)


def test_auto_respects_a_custom_fallback_order():
    order = choose_variants("auto", ALL, gpu_visible=False, tf_available=True, fallback_order=["float16", "int8"])
    assert order == ["float16", "int8"]
    with pytest.raises(ValueError, match="unknown variant 'int4'"):
        choose_variants("auto", ALL, gpu_visible=False, tf_available=True, fallback_order=["int4"])


@pytest.mark.parametrize("variant", ALL)
def test_an_explicit_published_variant_is_the_only_candidate(variant):
    assert choose_variants(variant, ALL, gpu_visible=False, tf_available=True) == [variant]


def test_an_explicit_unpublished_or_unknown_variant_is_not_found():
    with pytest.raises(NotFound, match=r"variant 'int8' is not published .*published: savedmodel, float32") as err:
        choose_variants("int8", ["float32", "savedmodel"], gpu_visible=True, tf_available=True)
    assert err.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(NotFound, match="unknown variant 'int4'"):
        require_variant("int4", ALL, tf_available=True)


def test_an_explicit_savedmodel_without_tensorflow_is_a_failed_precondition():
    with pytest.raises(FailedPrecondition, match="needs TensorFlow"):
        require_variant("savedmodel", ALL, tf_available=False)


def test_device_helpers_in_a_process_with_tensorflow():
    assert devices.is_tensorflow_available() is True
    assert devices.gpu_visible() is False  # no GPU on the test machines


# --- consistency guard ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris():
    return build_litert_models().iris


def _loaded(path, variant):
    backend = TFLiteBackend(path, variant=variant, num_threads=1, pool_size=1)
    backend.load()
    return backend


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8"])
def test_guard_accepts_faithful_variants(iris, variant):
    check_consistency(_loaded(iris.tflite(variant), variant), ModelCard.from_dict(iris.card()), **GUARD)


def test_guard_refuses_a_variant_with_corrupted_weights(iris):
    corrupt = _loaded(build_litert_models().randomized, "float32")
    with pytest.raises(ModelLoadError, match=r"variant float32 refused by the consistency guard .*'probabilities'"):
        check_consistency(corrupt, ModelCard.from_dict(iris.card()), **GUARD)


def test_guard_refuses_when_the_card_disagrees_on_the_class(iris):
    card = iris.card()
    outputs = np.asarray(card["samples"]["outputs"]["probabilities"])
    card["samples"]["outputs"]["probabilities"] = np.roll(outputs, 1, axis=1).tolist()  # every argmax moves
    with pytest.raises(ModelLoadError, match=r"variant int8 .*top-1 agreement 0\.000 < min_top1_agreement 0\.9"):
        check_consistency(_loaded(iris.tflite("int8"), "int8"), ModelCard.from_dict(card), **GUARD)


def test_guard_refuses_a_regression_output_beyond_atol(iris):
    card = iris.card() | {"task": "regression"}
    outputs = np.asarray(card["samples"]["outputs"]["probabilities"])
    card["samples"]["outputs"]["probabilities"] = (outputs + 0.2).tolist()
    with pytest.raises(ModelLoadError, match=r"variant dynamic .*max abs error 0\.2\d* > consistency_atol 0\.05"):
        check_consistency(_loaded(iris.tflite("dynamic"), "dynamic"), ModelCard.from_dict(card), **GUARD)
    check_consistency(
        _loaded(iris.tflite("dynamic"), "dynamic"), ModelCard.from_dict(card), atol=0.25, min_top1_agreement=1.0
    )


def test_guard_requires_both_agreement_and_error_for_classification(iris):
    int8 = _loaded(iris.tflite("int8"), "int8")
    with pytest.raises(ModelLoadError, match=r"max abs error .* > consistency_atol 1e-09"):
        check_consistency(int8, ModelCard.from_dict(iris.card()), atol=1e-9, min_top1_agreement=0.0)


def test_guard_refuses_a_card_whose_samples_do_not_fit(iris):
    card = copy.deepcopy(iris.card())
    card["samples"]["inputs"] = {"features": [[1.0, 2.0]]}
    with pytest.raises(ModelLoadError, match="could not run the card's samples"):
        check_consistency(_loaded(iris.tflite("float32"), "float32"), ModelCard.from_dict(card), **GUARD)
    del card["samples"]
    check_consistency(
        _loaded(iris.tflite("float32"), "float32"), ModelCard.from_dict(card), **GUARD
    )  # nothing to compare: accepted


def test_top1_agreement_for_binary_scores():
    reference = np.array([[0.1], [0.7], [0.4], [0.9]])
    assert top1_agreement(np.array([[0.2], [0.6], [0.55], [0.8]]), reference) == 0.75
    logits = np.array([-2.0, 3.0, -0.5, 1.0])
    assert top1_agreement(np.array([-1.0, 2.0, 0.5, 2.0]), logits) == 0.75
