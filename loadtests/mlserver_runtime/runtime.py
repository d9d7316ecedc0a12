"""A custom MLServer runtime serving a TensorFlow SavedModel's serving signature (runs in MLServer's venv only).

MLServer ships no TensorFlow runtime, so the peer benchmark serves the same SavedModel through this
`MLModel` subclass. It decodes every v2 input with MLServer's NumpyCodec, feeds the serving signature
(an input whose name the signature knows goes to that input; a lone input goes to the lone signature
input whatever its name) and returns every signature output, encoded with NumpyCodec.
NOTE: never imported by Batchwise; MLServer imports it from the model folder inside its own virtualenv.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

SIGNATURE = "serving_default"


class TFSavedModelRuntime(MLModel):
    """Loads `parameters.uri` (a SavedModel folder) with tf.saved_model.load and calls its serving signature."""

    async def load(self) -> bool:
        """Load the SavedModel and resolve the serving signature; raises what TensorFlow raises."""
        uri = await get_model_uri(self._settings)
        self._model = tf.saved_model.load(uri)
        self._signature = self._model.signatures[SIGNATURE]
        _, specs = self._signature.structured_input_signature
        self._input_dtypes = {name: spec.dtype for name, spec in specs.items()}
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Decode the inputs, run the signature, encode every output; raises InferenceError for unknown inputs."""
        feeds = {self._input_name(i.name): NumpyCodec.decode_input(i) for i in payload.inputs}
        tensors = {name: tf.convert_to_tensor(value, self._input_dtypes[name]) for name, value in feeds.items()}
        outputs = self._signature(**tensors)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, np.asarray(value)) for name, value in outputs.items()],
        )

    def _input_name(self, requested: str) -> str:
        if requested in self._input_dtypes:
            return requested
        if len(self._input_dtypes) == 1:
            return next(iter(self._input_dtypes))
        raise InferenceError(f"unknown input {requested!r}; the signature takes {sorted(self._input_dtypes)}")
