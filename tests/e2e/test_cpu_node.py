"""A CPU node without TensorFlow: the CLI server serves TFLite variants with `import tensorflow` blocked."""

from __future__ import annotations

import numpy as np
import pytest

from loadtests.servers import start_server
from service.client import BatchwiseClient, ClientError
from tests.support import blocked_tf_env
from tests.support.litert_models import build_litert_models


@pytest.fixture(scope="module")
def cpu_node(tmp_path_factory):
    models = build_litert_models()
    repo = models.iris.version_dir.parents[1]
    log = tmp_path_factory.mktemp("cpu-node") / "server.log"
    server = start_server(
        ["--repository.path", str(repo), "--repository.poll-interval-s", "0"], env=blocked_tf_env(), log_path=log
    )
    try:
        server.wait_serving()
        yield models, server.target, log
    finally:
        assert server.stop() == 0, server.log_tail(3000)


@pytest.mark.slow
def test_cpu_node_serves_int8_without_tensorflow(cpu_node):
    models, target, log = cpu_node
    iris = models.iris
    with BatchwiseClient(target) as client:
        _version, outputs = client.predict("iris", {iris.input_name: iris.x_test})
    served = outputs[iris.output_name]
    assert served.dtype == np.float32  # clients see float32 even though the int8 variant runs
    agreement = np.mean(served.argmax(axis=1) == iris.y_savedmodel.argmax(axis=1))
    assert agreement >= 0.95
    assert "serves variant int8" in log.read_text()


@pytest.mark.slow
def test_cpu_node_per_request_variant_override(cpu_node):
    models, target, _log = cpu_node
    iris = models.iris
    with BatchwiseClient(target) as client:
        _v, float32 = client.predict("iris", {iris.input_name: iris.x_test}, variant="float32")
        np.testing.assert_allclose(float32[iris.output_name], iris.y_savedmodel, atol=1e-5)
        with pytest.raises(ClientError) as unknown:
            client.predict("iris", {iris.input_name: iris.x_test[:1]}, variant="int4")
        assert unknown.value.code == "NOT_FOUND"
        with pytest.raises(ClientError) as no_tf:
            client.predict("iris", {iris.input_name: iris.x_test[:1]}, variant="savedmodel")
        assert no_tf.value.code == "FAILED_PRECONDITION"
        assert "TensorFlow" in no_tf.value.message
