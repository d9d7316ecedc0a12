"""A settings typo stops the real `python -m service` at start, naming the key and the nearest valid one."""

from __future__ import annotations

import pytest

from loadtests.servers import start_server


@pytest.mark.parametrize(
    ("args", "env", "config", "named"),
    [
        ([], {"BATCHWISE_BATCHING__MAX_BATCH_SISE": "3"}, None,
         "unknown setting 'batching.max_batch_sise' (environment variable BATCHWISE_BATCHING__MAX_BATCH_SISE); "
         "did you mean 'batching.max_batch_size'?"),
        ([], {}, "[batching]\nmax_batch_sise = 3\n",
         "unknown setting 'batching.max_batch_sise' (config file"),
        ([], {}, '[models.digits]\nvariant = "int8"\n[models.digits.batching]\nmax_batch_sise = 3\n',
         "did you mean 'models.digits.batching.max_batch_size'?"),
        (["--batching.max-batch-sise", "3"], {}, None,
         "(command-line flag --batching.max-batch-sise); did you mean '--batching.max-batch-size'?"),
    ],
    ids=["env", "toml", "per-model-override", "cli"],
)  # fmt: skip
def test_a_typo_stops_the_server_naming_the_key(tmp_path, args, env, config, named):
    if config is not None:
        (tmp_path / "server.toml").write_text(config)
        args = [*args, "--config-file", str(tmp_path / "server.toml")]
    server = start_server(["--repository.path", str(tmp_path), *args], env=env, log_path=tmp_path / "server.log")
    assert server.wait(120) == 2  # never started serving: exited with the bad-settings status
    assert named in server.log_tail(), server.log_tail()
