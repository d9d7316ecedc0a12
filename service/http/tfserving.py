"""TensorFlow Serving's REST API: model status, model metadata and predict, over the DataPlane.

Paths, request and response shapes follow TF Serving's REST documentation (api_rest.md):
  GET  /v1/models/{m}[/versions/{v}|/labels/{l}]             -> GetModelStatusResponse as JSON
  GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata    -> GetModelMetadataResponse as JSON
  POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict     -> {"predictions": ...} or {"outputs": ...}
:classify and :regress are not served (501: our models export predict signatures only).
"""

from __future__ import annotations

import re

import orjson

from service.dataplane import DataPlane, ModelRef, PredictResult
from service.errors import InvalidArgument, Unimplemented
from service.http.routes import Call, Reply, Route, positive_version
from service.http.tfjson import decode_predict_request, dump_predictions
from service.metrics import TFSERVING_REST
from service.repository.servable import ServableVersion, VersionState
from service.rpc.signature_def import signature_def_json

_MODEL = r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
_TEMPLATE = "/v1/models/{model}[/versions/{version}|/labels/{label}]"


class TFServingRestDoor:
    """The TF Serving REST routes over `dataplane`."""

    protocol = TFSERVING_REST

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def routes(self) -> list[Route]:
        return [
            Route("POST", _TEMPLATE + ":predict", re.compile(_MODEL + r":predict"), self.predict, predict=True),
            Route(
                "POST", _TEMPLATE + ":{verb}", re.compile(_MODEL + r":(?P<verb>classify|regress)"), self.unimplemented
            ),
            Route("GET", _TEMPLATE + "/metadata", re.compile(_MODEL + r"/metadata"), self.metadata),
            Route("GET", _TEMPLATE, re.compile(_MODEL), self.status),
        ]

    async def status(self, call: Call) -> Reply:
        versions = self._dataplane.model_status(_ref(call))
        body = {"model_version_status": [_version_status(servable) for servable in versions]}
        return Reply(orjson.dumps(body))

    async def metadata(self, call: Call) -> Reply:
        servable = await self._dataplane.resolve(_ref(call))
        body = {
            "model_spec": _model_spec(servable, ""),
            "metadata": {"signature_def": signature_def_json(servable.signatures)},
        }
        return Reply(orjson.dumps(body), headers={"x-batchwise-variant": servable.variant})

    async def predict(self, call: Call) -> Reply:
        ref = _ref(call)
        document = await call.json(non_finite=True)
        if type(document) is not dict:
            raise InvalidArgument('request body: expected a JSON object with "instances" or "inputs"')
        signature = document.get("signature_name", "")
        if type(signature) is not str:
            raise InvalidArgument(f"signature_name: expected a string, got {type(signature).__name__}")
        servable = await self._dataplane.resolve(ref._replace(signature=signature))
        spec = servable.signature(signature)
        inputs, row_format = decode_predict_request(document, spec)
        result = await self._dataplane.predict(servable, signature, inputs)
        return Reply(dump_predictions(result.outputs, row_format), labels=_labels(result))

    async def unimplemented(self, call: Call) -> Reply:
        raise Unimplemented(
            f":{call.params['verb']} is not served: Batchwise serves predict signatures only; use :predict"
        )


def _ref(call: Call) -> ModelRef:
    params = call.params
    call.model = params["model"]
    return ModelRef(params["model"], positive_version(params.get("version")), params.get("label"), variant=call.variant)


def _labels(result: PredictResult) -> tuple[str, str, str, str]:
    servable = result.servable
    return servable.model, str(servable.version), servable.variant, result.signature


def _model_spec(servable: ServableVersion, signature: str) -> dict:
    return {"name": servable.model, "signature_name": signature, "version": str(servable.version)}


def _version_status(servable: ServableVersion) -> dict:
    failed = servable.error is not None and servable.state is VersionState.END
    return {
        "version": str(servable.version),
        "state": servable.state.name,
        "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": servable.error if failed else ""},
    }
