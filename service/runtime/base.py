"""The Backend contract: what every runtime (SavedModel, LiteRT) offers the rest of the server.

Only modules under runtime/ import TensorFlow or LiteRT, and each imports just one.
Everything above this layer speaks numpy: inputs and outputs are dicts of ndarrays
whose first axis is the batch; string tensors are object arrays of bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
PredictFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]  # one signature's predict


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature. `shape` uses None for a dynamic dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None  # None = unknown rank

    @property
    def batched(self) -> bool:
        """True when the leading dimension is the (dynamic) batch dimension."""
        return bool(self.shape) and self.shape[0] is None


@dataclass(frozen=True)
class SignatureSpec:
    """A named model function with its typed inputs and outputs."""

    name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method_name: str = "tensorflow/serving/predict"
    extra: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A loaded model version that can run a signature on a batch.

    Contract:
      - the constructor is cheap; `load()` does the heavy work and raises ModelLoadError;
      - `predict` is thread-safe, blocking, and returns every output of the signature,
        each with the same number of rows as the inputs;
      - `worker_predict_fns(signature)` gives one predict callable per independent copy of the
        model (e.g. one per GPU), each for its own batch worker; a single-copy backend gives one;
      - `unload()` releases resources; predict must not be called afterwards.
    """

    variant: str

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]: ...

    def load(self) -> None: ...

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def worker_predict_fns(self, signature: str) -> list[PredictFn]: ...

    def unload(self) -> None: ...
