"""Warm-up inputs: the model card's samples (or synthetic rows) at each batch size a batcher can form."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from contract.card import ModelCard
from service.runtime.base import SignatureSpec
from service.settings import BatchingSettings


def warmup_batches(
    signatures: Mapping[str, SignatureSpec], card: ModelCard | None, batching: BatchingSettings
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield (signature, inputs) pairs covering every batch size the batcher will use.

    With allowed_batch_sizes those sizes are used; otherwise 1 and max_batch_size. Rows come
    from the card's samples when they fit the signature, else from synthetic zeros / b"".
    """
    sizes = batching.allowed_batch_sizes or sorted({1, batching.max_batch_size})
    for name, spec in signatures.items():
        if not all(s.batched for s in spec.inputs.values()):
            continue  # unbatched signatures are not warmed: their inputs cannot be guessed
        rows = sample_rows(card, spec) or synthetic_rows(spec)
        for size in sizes:
            yield name, {key: _tile(value, size) for key, value in rows.items()}


def sample_rows(card: ModelCard | None, spec: SignatureSpec) -> dict[str, np.ndarray] | None:
    """The card's sample inputs as arrays of the signature's dtypes, or None if they do not fit."""
    samples = card.samples.inputs if card is not None and card.samples is not None else None
    if samples is None or set(samples) != set(spec.inputs):
        return None
    try:
        arrays = {name: np.asarray(samples[name], dtype=spec.inputs[name].dtype) for name in spec.inputs}
    except (TypeError, ValueError):
        return None
    for name, array in arrays.items():
        shape = spec.inputs[name].shape
        if shape is not None and (array.ndim != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, array.shape, strict=True)
        )):
            return None
    return arrays


def synthetic_rows(spec: SignatureSpec) -> dict[str, np.ndarray]:
    """One row per input: zeros (or empty strings), with unknown non-batch dimensions set to 1."""
    rows = {}
    for name, tensor in spec.inputs.items():
        dims = [1] + [1 if d is None else d for d in (tensor.shape or (None,))[1:]]
        fill = b"" if tensor.dtype == np.dtype(object) else 0
        rows[name] = np.full(dims, fill, dtype=tensor.dtype)
    return rows


def _tile(rows: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // rows.shape[0])
    return np.concatenate([rows] * reps)[:size]
