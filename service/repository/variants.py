"""Which artifact serves a model version: discover its variants, order the candidates, guard consistency.

Pure logic over the version folder and its typed model card; nothing here imports TensorFlow
or LiteRT, so a CPU node without TensorFlow can use all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract import layout
from contract.card import ModelCard
from contract.layout import KNOWN_VARIANTS, SAVEDMODEL, SAVEDMODEL_FILE
from service.errors import FailedPrecondition, ModelLoadError, NotFound
from service.repository.layout import VersionDir, read_card
from service.runtime.base import DEFAULT_SIGNATURE, Backend
from service.settings import DEFAULT_FALLBACK_ORDER

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_FALLBACK_ORDER", "KNOWN_VARIANTS", "SAVEDMODEL"]
CLASSIFICATION_TASKS = frozenset({"classification", "binary"})


@dataclass(frozen=True)
class VersionFiles:
    """What a version folder offers, read once per load: its typed card (None without one) and its variants."""

    source: VersionDir
    card: ModelCard | None
    variants: Mapping[str, Path]  # variant -> artifact path, see discover_variants


def read_version(source: VersionDir) -> VersionFiles:
    """Read the card and discover the variants of `source`. Raises ModelLoadError for an invalid card.

    NOTE: blocking file I/O; runs on a loader thread.
    """
    card = read_card(source.path)
    return VersionFiles(source, card, discover_variants(source.path, card))


def variant_path(version_dir: Path, variant: str) -> Path:
    """Where `variant` lives in a version folder (the repository contract; the card's "path" is not trusted)."""
    try:
        return layout.variant_path(version_dir, variant)
    except ValueError:
        raise NotFound(_unknown(variant)) from None


def discover_variants(version_dir: Path, card: ModelCard | None) -> dict[str, Path]:
    """The variants this version offers, variant -> artifact path, in KNOWN_VARIANTS order.

    savedmodel is offered when saved_model.pb exists. A TFLite variant is offered when its file
    exists and, if there is a model card, the card marks it published (the trainer's quality
    gate); without a card every present file is offered.
    """
    published = card.published_variants if card is not None else None
    found = {}
    for variant in KNOWN_VARIANTS:
        path = variant_path(version_dir, variant)
        if variant == SAVEDMODEL:
            if (path / SAVEDMODEL_FILE).is_file():
                found[variant] = path
        elif path.is_file() and (published is None or variant in published):
            found[variant] = path
    return found


def require_variant(requested: str, available: Collection[str], *, tf_available: bool) -> str:
    """Return `requested` if this node can serve it for this version.

    Raises NotFound for an unknown or unpublished variant, and FailedPrecondition for
    savedmodel on a node without TensorFlow. Use it for per-request overrides too.
    """
    if requested not in KNOWN_VARIANTS:
        raise NotFound(_unknown(requested))
    if requested not in available:
        offered = ", ".join(v for v in KNOWN_VARIANTS if v in available) or "none"
        raise NotFound(f"variant {requested!r} is not published for this model version (published: {offered})")
    if requested == SAVEDMODEL and not tf_available:
        raise FailedPrecondition(
            "variant 'savedmodel' needs TensorFlow, which is not installed on this node (install batchwise[tf])"
        )
    return requested


def choose_variants(
    requested: str,
    available: Collection[str],
    *,
    gpu_visible: bool,
    tf_available: bool,
    fallback_order: Sequence[str] = DEFAULT_FALLBACK_ORDER,
) -> list[str]:
    """The variants to try, best first; load the first that loads and passes the consistency guard.

    An explicit variant yields just itself (see require_variant). "auto" yields savedmodel first
    when a GPU is visible and TensorFlow is installed, then `fallback_order`; on a CPU node just
    `fallback_order`. Variants not available, and savedmodel without TensorFlow, are skipped.
    Raises NotFound when nothing is left, ValueError for an unknown name in `fallback_order`.
    """
    unknown = [v for v in fallback_order if v not in KNOWN_VARIANTS]
    if unknown:
        raise ValueError(f"fallback_order: {_unknown(unknown[0])}")
    if requested != "auto":
        return [require_variant(requested, available, tf_available=tf_available)]
    order = [SAVEDMODEL, *fallback_order] if gpu_visible and tf_available else list(fallback_order)
    candidates = [v for v in dict.fromkeys(order) if v in available and (v != SAVEDMODEL or tf_available)]
    if not candidates:
        raise NotFound(
            f"no servable variant: published {sorted(available) or 'none'}, fallback order {list(fallback_order)}, "
            f"TensorFlow {'installed' if tf_available else 'not installed'}"
        )
    return candidates


def check_consistency(backend: Backend, card: ModelCard | None, *, atol: float, min_top1_agreement: float) -> None:
    """Run the card's sample inputs through `backend` and compare with the card's (SavedModel) outputs.

    Every output needs max |difference| <= atol; classification/binary cards also need top-1
    agreement >= min_top1_agreement. A card without samples cannot be checked (logged, accepted).
    Raises ModelLoadError naming the variant, the metric and the threshold.
    """
    samples = card.samples if card is not None else None
    if samples is None or not samples.inputs or not samples.outputs:
        log.warning("variant %s: model card has no samples; consistency guard skipped", backend.variant)
        return
    signature = card.signature_name or DEFAULT_SIGNATURE
    outputs = _run_samples(backend, signature, samples.inputs)
    classify = card.task in CLASSIFICATION_TASKS
    for name, expected in samples.outputs.items():
        if name not in outputs:
            raise ModelLoadError(f"variant {backend.variant}: consistency guard: output {name!r} is missing")
        min_top1 = min_top1_agreement if classify else None
        _compare(backend.variant, name, outputs[name], expected, atol=atol, min_top1=min_top1)


def _run_samples(backend: Backend, signature: str, raw_inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    spec = backend.signatures.get(signature)
    if spec is None:
        raise ModelLoadError(f"variant {backend.variant}: consistency guard: no signature {signature!r}")
    try:
        inputs = {name: np.asarray(raw_inputs[name], dtype=tensor.dtype) for name, tensor in spec.inputs.items()}
        return backend.predict(signature, inputs)
    except Exception as exc:  # any failure on the card's own samples disqualifies the variant
        raise ModelLoadError(
            f"variant {backend.variant}: consistency guard could not run the card's samples: {exc!r}"
        ) from exc


def _compare(variant: str, name: str, got: np.ndarray, expected: Any, *, atol: float, min_top1: float | None) -> None:
    reference = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    where = f"variant {variant} refused by the consistency guard on output {name!r}"
    if got.shape != reference.shape:
        raise ModelLoadError(f"{where}: shape {got.shape} differs from the card's {reference.shape}")
    max_error = float(np.max(np.abs(got - reference), initial=0.0))  # NaN stays NaN and is refused below
    if min_top1 is not None:
        agreement = top1_agreement(got, reference)
        if not agreement >= min_top1:
            raise ModelLoadError(
                f"{where}: top-1 agreement {agreement:.3f} < min_top1_agreement {min_top1} "
                f"({len(reference)} card samples)"
            )
    if not max_error <= atol:
        raise ModelLoadError(f"{where}: max abs error {max_error:.4g} > consistency_atol {atol}")
    log.info("variant %s: output %r matches the card (max abs error %.3g)", variant, name, max_error)


def top1_agreement(got: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of rows whose predicted class matches the reference's.

    Multi-class outputs use argmax over the last axis. A single score per row (binary) is
    thresholded at 0.5 when the reference looks like probabilities (all in [0, 1]), else at 0.
    """
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        matches = got.argmax(axis=-1) == reference.argmax(axis=-1)
    else:
        threshold = 0.5 if ((reference >= 0) & (reference <= 1)).all() else 0.0
        matches = (got > threshold) == (reference > threshold)
    return float(np.mean(matches)) if matches.size else 1.0


def _unknown(variant: str) -> str:
    return f"unknown variant {variant!r}; known variants: {', '.join(KNOWN_VARIANTS)}"
