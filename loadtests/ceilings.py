"""The compute ceiling: a model's own best in-process throughput, without any server in the way.

SavedModel: the `serving_default` concrete function called directly in a loop at each batch size.
TFLite: a LiteRT interpreter per variant, resized to the batch, inputs already in the
interpreter's dtype (int8 inputs quantized once beforehand), invoke + copy the outputs out.
Each figure is the best of a few repeats (best = least disturbed by the other tenants of a
shared machine). TensorFlow's thread pools can be sized once per process, so each TF threading
is its own run: `python -m loadtests.ceilings --version-dir DIR --batch-sizes 1,32,64
--tf-threads 1,1 --tflite-threads 1,2` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from contract.card import load_card
from contract.layout import SAVEDMODEL_FILE, TFLITE_VARIANTS, variant_path


def best_rate(call: Callable[[], object], rows: int, seconds: float, repeats: int) -> dict:
    """Run `call` for `seconds` per repeat; the best repeat's rows/s and ms per call."""
    for _ in range(3):  # warm-up: first calls allocate and trace
        call()
    best_s = float("inf")
    for _ in range(repeats):
        n = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            call()
            n += 1
        best_s = min(best_s, elapsed / n)
    return {"batch": rows, "rows_per_s": rows / best_s, "ms_per_batch": best_s * 1e3}


def sample_batch(card: dict, input_name: str, rows: int) -> np.ndarray:
    """`rows` rows cycled from the model card's sample inputs (float32)."""
    samples = np.asarray(card["samples"]["inputs"][input_name], dtype=np.float32)
    return samples[np.arange(rows) % len(samples)]


def savedmodel_rates(version_dir: Path, input_name: str, batch: Callable[[int], np.ndarray],
                     sizes: Sequence[int], *, seconds: float, repeats: int) -> list[dict]:
    """Rows/s of the SavedModel's serving_default at each batch size (TF threads as configured)."""
    import tensorflow as tf

    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    rates = []
    for size in sizes:
        x = batch(size)

        def call(x=x):
            return {k: v.numpy() for k, v in function(**{input_name: tf.constant(x)}).items()}

        rates.append(best_rate(call, size, seconds, repeats))
    return rates


def litert_rates(path: Path, batch: Callable[[int], np.ndarray], sizes: Sequence[int], *, threads: int,
                 seconds: float, repeats: int) -> list[dict]:
    """Rows/s of one .tflite file through a bare LiteRT interpreter with `threads` threads."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    (detail,) = interpreter.get_input_details()
    outputs = [d["index"] for d in interpreter.get_output_details()]
    rates = []
    for size in sizes:
        x = batch(size)
        scale, zero_point = detail["quantization"]
        if np.issubdtype(detail["dtype"], np.integer) and scale:
            info = np.iinfo(detail["dtype"])
            x = np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])
        interpreter.resize_tensor_input(detail["index"], x.shape, strict=False)
        interpreter.allocate_tensors()

        def call(x=x):
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
            return [interpreter.get_tensor(i) for i in outputs]

        rates.append(best_rate(call, size, seconds, repeats))
    return rates


def measure(version_dir: Path, sizes: Sequence[int], tflite_sizes: Sequence[int], *,
            tflite_threads: Sequence[int], seconds: float, repeats: int) -> dict:
    """Every ceiling for one version: {"savedmodel": [...], "<variant>": [...], "<variant>@2t": [...]}.

    A TFLite variant at the first of `tflite_threads` is keyed by its name, others get "@<n>t".
    """
    card = load_card(version_dir).raw
    (input_name,) = card["samples"]["inputs"]
    batch = lambda rows: sample_batch(card, input_name, rows)  # noqa: E731
    result: dict = {"input": input_name}
    if sizes and (version_dir / SAVEDMODEL_FILE).exists():
        result["savedmodel"] = savedmodel_rates(version_dir, input_name, batch, sizes, seconds=seconds, repeats=repeats)
    for variant in TFLITE_VARIANTS:
        path = variant_path(version_dir, variant)
        for i, threads in enumerate(tflite_threads):
            if path.exists():
                result[variant if i == 0 else f"{variant}@{threads}t"] = litert_rates(
                    path, batch, tflite_sizes, threads=threads, seconds=seconds, repeats=repeats
                )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.ceilings", description=__doc__.split("\n")[0])
    parser.add_argument("--version-dir", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,8,32,64", help="SavedModel batch sizes ('' to skip it)")
    parser.add_argument("--tflite-batch-sizes", default="1,32")
    parser.add_argument("--tflite-threads", default="1", help="LiteRT threads to measure, e.g. 1,2 ('' to skip)")
    parser.add_argument("--tf-threads", default="0,0", help="TensorFlow intra-op,inter-op threads (0 = TF default)")
    parser.add_argument("--seconds", type=float, default=0.6, help="per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    tflite_sizes = [int(s) for s in args.tflite_batch_sizes.split(",") if s]
    tflite_threads = [int(t) for t in args.tflite_threads.split(",") if t]
    intra, inter = (int(t) for t in args.tf_threads.split(","))
    if sizes:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    result = measure(
        args.version_dir, sizes, tflite_sizes, tflite_threads=tflite_threads, seconds=args.seconds,
        repeats=args.repeats,
    )
    result["tf_threads"] = {"intra_op": intra, "inter_op": inter}
    result["tflite_threads"] = tflite_threads
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
