"""A minimal PredictionService/ModelService that echoes inputs back: a real gRPC peer for client tests."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field

import grpc

from service.api import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    types_pb2,
)

MISSING_MODEL = "missing"
ECHO_VERSION = 7


@dataclass
class EchoServicer(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """Predict returns the inputs as outputs; metadata describes `signature_inputs`; records call metadata."""

    signature_inputs: dict[str, int] = field(default_factory=lambda: {"x": types_pb2.DT_FLOAT})
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def _enter(self, method: str, model: str, context: grpc.ServicerContext) -> None:
        self.calls.append((method, dict(context.invocation_metadata())))
        if model == MISSING_MODEL:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {model!r} is not served")

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext):
        self._enter("Predict", request.model_spec.name, context)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        response.model_spec.ClearField("version_label")
        response.model_spec.version.value = request.model_spec.version.value or ECHO_VERSION
        for name, tensor in request.inputs.items():
            if not request.output_filter or name in request.output_filter:
                response.outputs[name].CopyFrom(tensor)
        return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        self._enter("GetModelMetadata", request.model_spec.name, context)
        signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        for name, dtype in self.signature_inputs.items():
            signature.inputs[name].name = f"{name}:0"
            signature.inputs[name].dtype = dtype
            signature.inputs[name].tensor_shape.dim.add(size=-1)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = ECHO_VERSION
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        signature_map.signature_def["serving_default"].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        self._enter("GetModelStatus", request.model_spec.name, context)
        status = get_model_status_pb2.ModelVersionStatus
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.add(version=ECHO_VERSION, state=status.AVAILABLE)
        failed = response.model_version_status.add(version=ECHO_VERSION + 1, state=status.END)
        failed.status.error_code = 13  # INTERNAL
        failed.status.error_message = "load failed"
        return response


def start_echo_server(
    servicer: EchoServicer, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.Server, str]:
    """Serve `servicer` on a free loopback port; return the started server and its target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    return server, f"127.0.0.1:{port}"
