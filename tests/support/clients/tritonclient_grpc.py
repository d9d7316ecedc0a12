"""Checks one server through tritonclient.grpc; run with tritonclient's own interpreter (tritonclient_env.py).

Usage: python tritonclient_grpc.py TARGET PLAN_JSON
PLAN_JSON: {"model": str, "input": str, "output": str, "rows": [[...]], "token": str | null,
            "root_certificates": path | null}
Prints one JSON document: each check's ["OK", value] or [status code name, message].
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def outcome(call):
    try:
        return ["OK", call()]
    except InferenceServerException as exc:
        return [str(exc.status()).removeprefix("StatusCode."), exc.message()]


def infer(client, plan, array, *, datatype="FP32", model=None, headers=None):
    """ModelInfer of `array` as the plan's input; the response's id, version and the plan's output."""
    output = plan["output"]
    tensor = triton.InferInput(plan["input"], list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    wanted = [triton.InferRequestedOutput(output)]
    result = client.infer(model or plan["model"], [tensor], outputs=wanted, request_id="tc-1", headers=headers)
    response = result.get_response()
    return {"id": response.id, "model_version": response.model_version, "output": result.as_numpy(output).tolist()}


def main() -> None:
    target, plan = sys.argv[1], json.loads(sys.argv[2])
    ssl = plan.get("root_certificates") is not None
    client = triton.InferenceServerClient(target, ssl=ssl, root_certificates=plan.get("root_certificates"))
    headers = {"authorization": f"Bearer {plan['token']}"} if plan.get("token") else None
    model = plan["model"]
    rows = np.array(plan["rows"], np.float32)
    checks = {
        "server_live": lambda: client.is_server_live(headers=headers),
        "server_ready": lambda: client.is_server_ready(headers=headers),
        "server_metadata": lambda: client.get_server_metadata(headers=headers, as_json=True),
        "model_ready": lambda: client.is_model_ready(model, headers=headers),
        "unknown_model_ready": lambda: client.is_model_ready("no-such-model", headers=headers),
        "model_metadata": lambda: client.get_model_metadata(model, headers=headers, as_json=True),
        "infer": lambda: infer(client, plan, rows, headers=headers),
        "unknown_model": lambda: infer(client, plan, rows, model="no-such-model", headers=headers),
        "wrong_shape": lambda: infer(client, plan, rows[:, :-1].copy(), headers=headers),
        "wrong_dtype": lambda: infer(client, plan, rows.astype(np.float64), datatype="FP64", headers=headers),
    }
    print(json.dumps({key: outcome(check) for key, check in checks.items()}))


if __name__ == "__main__":
    main()
