"""ModelService: GetModelStatus, and HandleReloadConfigRequest (off unless server.enable_model_control)."""

from __future__ import annotations

from service.api import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc
from service.errors import NotFound, Unimplemented
from service.repository.manager import ModelManager
from service.repository.servable import ServableVersion, VersionState
from service.rpc.model_config import models_from_proto
from service.rpc.prediction_servicer import model_ref
from service.rpc.status import abort_with

_ERROR_CODE_UNKNOWN = 2  # tensorflow.error.Code.UNKNOWN: a failed load


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """TF Serving's ModelService over the ModelManager."""

    def __init__(self, manager: ModelManager, *, model_control_enabled: bool = False) -> None:
        self._manager = manager
        self._control = model_control_enabled

    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        try:
            ref = model_ref(request.model_spec)
            versions = self._manager.versions_of(ref.name)
            if ref.version is not None:
                versions = [s for s in versions if s.version == ref.version]
                if not versions:
                    raise NotFound(f"model_spec.version: model {ref.name!r} has no version {ref.version}")
        except Exception as exc:
            await abort_with(context, exc)
        response = get_model_status_pb2.GetModelStatusResponse()
        for servable in versions:
            _fill_status(response.model_version_status.add(), servable)
        return response

    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest, context):
        """Apply the listed models' version policies and labels; unlisted models keep theirs.

        UNIMPLEMENTED unless enabled; INVALID_ARGUMENT for a malformed config or an unknown model;
        FAILED_PRECONDITION for a label pointing at a version that is not AVAILABLE. On error
        nothing changes.
        """
        try:
            if not self._control:
                raise Unimplemented(
                    "HandleReloadConfigRequest is disabled; start the server with --server.enable-model-control"
                )
            models = models_from_proto(request.config, self._manager.is_repository_path)
            self._manager.apply_model_config(models, replace=False, known_only=True)
        except Exception as exc:
            await abort_with(context, exc)
        return model_management_pb2.ReloadConfigResponse()


def _fill_status(status: get_model_status_pb2.ModelVersionStatus, servable: ServableVersion) -> None:
    status.version = servable.version
    status.state = servable.state.value
    if servable.error and servable.state is VersionState.END:
        status.status.error_code = _ERROR_CODE_UNKNOWN
        status.status.error_message = servable.error
