"""TFLiteBackend on real converted models: signatures, batch resizing, padding, chunking, errors."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidArgument, ModelLoadError, NotFound, Unavailable
from service.runtime.base import Backend
from service.runtime.tflite import TFLiteBackend
from tests.support.litert_models import TFLITE_VARIANTS, build_litert_models

FLOAT_ATOL = 1e-5


@pytest.fixture(scope="module")
def models():
    return build_litert_models()


def _backend(path, variant="float32", **kwargs) -> TFLiteBackend:
    options = {"num_threads": 1, "pool_size": 1} | kwargs
    backend = TFLiteBackend(path, variant=variant, **options)
    backend.load()
    return backend


def _predict(backend: TFLiteBackend, rows: np.ndarray, name: str = "features") -> np.ndarray:
    return backend.predict("serving_default", {name: rows})["probabilities"]


@pytest.mark.parametrize("variant", TFLITE_VARIANTS)
def test_signature_is_the_savedmodel_interface(models, variant):
    backend = _backend(models.iris.tflite(variant), variant)
    assert isinstance(backend, Backend)
    spec = backend.signatures["serving_default"]
    assert list(spec.inputs) == ["features"] and list(spec.outputs) == ["probabilities"]
    assert spec.inputs["features"].dtype == np.float32  # float even for the int8 interface
    assert spec.inputs["features"].shape == (None, 4)
    assert spec.outputs["probabilities"].dtype == np.float32
    assert spec.outputs["probabilities"].shape == (None, 3)
    out = _predict(backend, models.iris.x_test[:5])
    assert out.dtype == np.float32 and out.shape == (5, 3)


def test_resizes_to_every_batch_size_and_back(models):
    backend = _backend(models.iris.tflite("float32"))
    x, expected = models.iris.x_test, models.iris.y_savedmodel
    for rows in (1, 7, 7, 2, len(x), 1, 0):  # repeated and shrinking sizes exercise the shape cache
        out = _predict(backend, x[:rows])
        assert out.shape == (rows, 3)
        np.testing.assert_allclose(out, expected[:rows], atol=FLOAT_ATOL)


def test_cnn_resizes_too(models):
    backend = _backend(models.digits.tflite("float32"))
    for rows in (1, 32, 5):
        out = _predict(backend, models.digits.x_test[:rows], "pixels")
        np.testing.assert_allclose(out, models.digits.y_savedmodel[:rows], atol=FLOAT_ATOL)


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 4, 7, 9])
def test_fixed_batch_model_pads_and_chunks(models, rows):
    backend = _backend(models.fixed_batch3)
    assert backend.signatures["serving_default"].inputs["features"].shape == (None, 4)
    out = _predict(backend, models.iris.x_test[:rows])
    assert out.shape == (rows, 3)
    np.testing.assert_allclose(out, models.iris.y_savedmodel[:rows], atol=FLOAT_ATOL)


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 8, 9, 17])
def test_allowed_batch_sizes_pad_then_slice(models, rows):
    backend = _backend(models.iris.tflite("int8"), "int8", allowed_batch_sizes=[8, 2])
    expected = _predict(_backend(models.iris.tflite("int8"), "int8"), models.iris.x_test[:rows])
    out = _predict(backend, models.iris.x_test[:rows])
    assert out.shape == (rows, 3)
    np.testing.assert_array_equal(out, expected)  # padding rows never leak into real rows


def test_outputs_are_copies_not_interpreter_memory(models):
    backend = _backend(models.iris.tflite("float32"))
    x = models.iris.x_test
    first = _predict(backend, x[:4])
    kept = first.copy()
    _predict(backend, x[4:8])  # same shape: the interpreter reuses its buffers
    np.testing.assert_array_equal(first, kept)
    assert first.flags.writeable


def test_model_without_signatures_uses_raw_tensors(models):
    backend = _backend(models.no_signatures)
    spec = backend.signatures["serving_default"]
    (input_name,) = spec.inputs
    (output_name,) = spec.outputs
    assert spec.inputs[input_name].shape == (None, 4)
    out = backend.predict("serving_default", {input_name: models.iris.x_test[:6]})[output_name]
    np.testing.assert_allclose(out, models.iris.y_savedmodel[:6], atol=FLOAT_ATOL)


def test_signatures_in_several_subgraphs_run_through_signature_runners(models):
    backend = _backend(models.two_signatures, pool_size=2)
    assert set(backend.signatures) == {"serving_default", "scores"}
    x, expected = models.iris.x_test, models.iris.y_savedmodel
    for rows in (1, 5, 3):
        np.testing.assert_allclose(_predict(backend, x[:rows]), expected[:rows], atol=FLOAT_ATOL)
        scores = backend.predict("scores", {"features": x[:rows]})["scores"]
        np.testing.assert_allclose(scores, expected[:rows] * 100.0, atol=100 * FLOAT_ATOL)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_unloadable_file_raises_model_load_error(models, tmp_path, damage):
    data = models.iris.tflite("int8").read_bytes()
    path = tmp_path / "int8.tflite"
    if damage != "missing":
        content = {"truncated": data[: len(data) // 2], "garbage": b"not a flatbuffer" * 64, "empty": b""}
        path.write_bytes(content[damage])
    backend = TFLiteBackend(path, variant="int8", num_threads=1, pool_size=2)
    with pytest.raises(ModelLoadError, match=r"cannot load TFLite variant 'int8'"):
        backend.load()


def test_request_errors(models):
    backend = _backend(models.iris.tflite("float32"))
    with pytest.raises(NotFound, match="signature 'nope'"):
        backend.predict("nope", {"features": models.iris.x_test[:1]})
    with pytest.raises(InvalidArgument, match="missing input 'features'"):
        backend.predict("serving_default", {"other": models.iris.x_test[:1]})
    with pytest.raises(InvalidArgument, match=r"'features' has shape \(2, 5\), expected \(None, 4\)"):
        backend.predict("serving_default", {"features": np.zeros((2, 5), np.float32)})
    with pytest.raises(InvalidArgument, match="has shape"):
        backend.predict("serving_default", {"features": np.zeros((4,), np.float32)})
    backend.unload()
    with pytest.raises(Unavailable):
        _predict(backend, models.iris.x_test[:1])


def test_rejects_nonsense_pool_settings(models):
    with pytest.raises(ValueError, match="pool_size"):
        TFLiteBackend(models.iris.tflite("float32"), variant="float32", num_threads=1, pool_size=0)
    with pytest.raises(ValueError, match="allowed_batch_sizes"):
        TFLiteBackend(models.iris.tflite("float32"), variant="x", num_threads=1, pool_size=1, allowed_batch_sizes=[0])
