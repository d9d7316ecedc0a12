"""ModelServerConfig (HandleReloadConfigRequest) -> per-model version policies and labels.

Models are always served from the repository root: base_path may be empty or name the
model's own folder there, and is otherwise refused without touching the file system.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from service.api import model_server_config_pb2
from service.errors import InvalidArgument
from service.repository.layout import validate_model_name
from service.settings import ModelSettings

IsModelPath = Callable[[str, str], bool]


def models_from_proto(
    config: model_server_config_pb2.ModelServerConfig, is_model_path: IsModelPath
) -> dict[str, ModelSettings]:
    """model name -> ModelSettings with the config's version policy and labels.

    `is_model_path(name, base_path)` says whether a base_path names the model's repository
    folder. Raises InvalidArgument for anything but a model_config_list, a bad or duplicate
    name, a base_path outside the repository, an empty specific policy or a bad label.
    """
    if config.WhichOneof("config") != "model_config_list":
        raise InvalidArgument("config: only model_config_list is supported")
    models: dict[str, ModelSettings] = {}
    for entry in config.model_config_list.config:
        name = validate_model_name(entry.name)
        if name in models:
            raise InvalidArgument(f"model_config_list: model {name!r} is listed twice")
        if entry.base_path and not is_model_path(name, entry.base_path):
            raise InvalidArgument(
                f"model_config_list: model {name!r}: base_path must be empty or the model's folder in the "
                "server's repository; models are never read from elsewhere"
            )
        try:
            models[name] = ModelSettings(**_policy(name, entry), version_labels=dict(entry.version_labels))
        except ValidationError as exc:
            detail = "; ".join(error["msg"] for error in exc.errors())
            raise InvalidArgument(f"model_config_list: model {name!r}: {detail}") from None
    return models


def _policy(name: str, entry: model_server_config_pb2.ModelConfig) -> dict:
    """TF Serving's ServableVersionPolicy as ModelSettings fields (unset: latest 1, as TF Serving)."""
    policy = entry.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return {"version_policy": "all"}
    if choice == "specific":
        if not policy.specific.versions:
            raise InvalidArgument(f"model_config_list: model {name!r}: specific policy lists no versions")
        return {"version_policy": "specific", "versions": list(policy.specific.versions)}
    num_versions = policy.latest.num_versions if choice == "latest" else 0
    return {"version_policy": "latest", "num_versions": max(1, num_versions)}
