"""The data plane: resolve a model version, validate a request against its signature, run it.

Transport-free: takes and returns numpy arrays and raises service.errors; rpc/ converts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from service.errors import NotFound
from service.repository.manager import ModelManager
from service.repository.servable import ServableVersion, VersionState
from service.settings import Settings
from service.validation import check_inputs, check_output_filter


class ModelRef(NamedTuple):
    """What a request asks for: a model, optionally a version or a label, and a signature.

    (A NamedTuple, not a frozen dataclass: one is built per request, and this is cheaper to build.)
    """

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = ""
    variant: str | None = None  # per-request override (gRPC metadata x-batchwise-variant)


@dataclass(frozen=True)
class PredictResult:
    """Outputs of one Predict, and the version and variant that produced them."""

    servable: ServableVersion
    signature: str
    outputs: dict[str, np.ndarray]


class DataPlane:
    """Runs Predict and answers metadata questions over the ModelManager's servables."""

    def __init__(self, manager: ModelManager, settings: Settings) -> None:
        self._manager = manager
        self._max_rows = settings.server.max_rows_per_request

    async def resolve(self, ref: ModelRef) -> ServableVersion:
        """The servable for `ref`, in the requested variant if any; raises NotFound / InvalidArgument."""
        servable = self._manager.resolve(ref.name, ref.version, ref.label)
        if ref.variant:
            servable = await self._manager.with_variant(servable, ref.variant)
        return servable

    def model_status(self, ref: ModelRef) -> list[ServableVersion]:
        """The versions of `ref.name` in any state (only the one its version or label names, if any).

        Raises NotFound for an unknown model or version, InvalidArgument for an unknown label.
        """
        versions = self._manager.versions_of(ref.name)
        version = self._manager.label_version(ref.name, ref.label) if ref.label else ref.version
        if version is None:
            return versions
        chosen = [servable for servable in versions if servable.version == version]
        if not chosen:
            raise NotFound(f"model_spec.version: model {ref.name!r} has no version {version}")
        return chosen

    def is_served(self, model: str) -> bool:
        """True if `model` is a model name the manager tracks (so it may be used as a metric label)."""
        return model in self._manager.model_names()

    def available_versions(self, model: str) -> list[int]:
        """The AVAILABLE versions of `model`, ascending; raises NotFound if the model is not served."""
        return [s.version for s in self._manager.versions_of(model) if s.state is VersionState.AVAILABLE]

    def is_ready(self, model: str, version: int | None = None) -> bool:
        """True if `model` (at `version`, else its latest) is AVAILABLE: a request for it would be served.

        False for an unknown model or version; raises InvalidArgument for a malformed model name.
        """
        try:
            self._manager.resolve(model, version)
        except NotFound:
            return False
        return True

    async def predict(
        self,
        servable: ServableVersion,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        deadline: float | None = None,
    ) -> PredictResult:
        """Validate and run one request through the batcher of `servable` (from `resolve`).

        `signature` '' means serving_default; `deadline` is an absolute time.monotonic() value.
        Raises ServingError subclasses: InvalidArgument, ResourceExhausted, Unavailable, DeadlineExceeded.
        """
        spec = servable.signature(signature)
        wanted = check_output_filter(spec, output_filter)
        check_inputs(spec, inputs, max_rows=self._max_rows)
        servable.acquire()
        try:
            outputs = await servable.batchers[spec.name].submit(dict(inputs), deadline)
        finally:
            servable.release()
        return PredictResult(servable, spec.name, {name: outputs[name] for name in wanted})
