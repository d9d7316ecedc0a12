"""LiteRT runtime: serves .tflite variants through ai_edge_litert; the only module that imports LiteRT.

Clients see exactly the SavedModel's interface: the same input/output names, float32 for
int8/uint8-quantized tensors (quantized here with each tensor's scale and zero point), and a
dynamic batch dimension even for models converted with a fixed batch (those run in chunks).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from service.errors import InvalidArgument, ModelLoadError, NotFound, ServingError, Unavailable
from service.runtime.base import DEFAULT_SIGNATURE, PredictFn, SignatureSpec, TensorSpec

log = logging.getLogger(__name__)
ClipCallback = Callable[[str, int], None]  # (input name, values clipped in one predict call)


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Affine-quantize floats: round(values / scale) + zero_point, clipped to `dtype`'s range.

    Rounds half away from zero, like LiteRT's own QUANTIZE kernel. Returns a new array of `dtype`.
    """
    info = np.iinfo(dtype)
    scaled = np.asarray(values, dtype=np.float32) / np.float32(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Map quantized integers back to float32: (values - zero_point) * scale. Returns a new array."""
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


@dataclass(frozen=True)
class _Tensor:
    """How one client-facing tensor maps onto an interpreter tensor."""

    name: str  # client-facing (SavedModel) name
    index: int  # interpreter tensor index
    dtype: np.dtype  # interpreter dtype
    shape: tuple[int, ...]  # LiteRT shape_signature: -1 marks a dynamic dimension
    scale: float  # 0.0 when the tensor is not quantized
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    def client_spec(self) -> TensorSpec:
        dtype = np.dtype(np.float32) if self.quantized else self.dtype
        return TensorSpec(self.name, dtype, (None, *(None if d < 0 else int(d) for d in self.shape[1:])))

    def encode(self, value: np.ndarray) -> np.ndarray:
        if self.quantized:
            return quantize(value, self.scale, self.zero_point, self.dtype)
        return np.ascontiguousarray(value, dtype=self.dtype)

    def decode(self, value: np.ndarray) -> np.ndarray:
        return dequantize(value, self.scale, self.zero_point) if self.quantized else value

    @cached_property
    def float_range(self) -> tuple[float, float]:
        """The floats a quantized tensor represents: [(qmin - zero_point) * scale, (qmax - zero_point) * scale]."""
        info = np.iinfo(self.dtype)
        return (info.min - self.zero_point) * self.scale, (info.max - self.zero_point) * self.scale

    def clipped(self, value: np.ndarray) -> int:
        """How many of `value`'s elements lie outside the range this quantized input can represent,
        [(qmin - zero_point) * scale, (qmax - zero_point) * scale]: quantizing saturates them.

        One vectorised min and max per call; elements are counted only when one is out of range.
        """
        low, high = self.float_range
        value = np.asarray(value)
        if value.size == 0 or (value.min() >= low and value.max() <= high):
            return 0  # NaN fails both tests and is counted below as not clipped
        return int(np.count_nonzero((value < low) | (value > high)))


@dataclass(frozen=True)
class _Plan:
    """How to run one signature: its tensors, and how batches map onto the interpreter."""

    key: str | None  # LiteRT signature key; None for a model without signatures
    inputs: tuple[_Tensor, ...]
    outputs: tuple[_Tensor, ...]
    direct: bool  # single-subgraph model: drive the interpreter directly and cache shapes
    fixed_batch: int | None  # the model's batch dimension when it was converted with a fixed one

    def spec(self, name: str) -> SignatureSpec:
        return SignatureSpec(
            name=name,
            inputs={t.name: t.client_spec() for t in self.inputs},
            outputs={t.name: t.client_spec() for t in self.outputs},
        )


class _Slot:
    """One interpreter and the input shapes it is currently allocated for.

    NOTE: not thread-safe, like the interpreter itself; the pool hands a slot to one thread at a time.
    """

    def __init__(self, interpreter: Interpreter) -> None:
        self.interpreter = interpreter
        self._shapes: dict[int, tuple[int, ...]] = {}
        self._runners: dict[str, object] = {}

    def run(self, plan: _Plan, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Invoke on `arrays` (interpreter dtypes, batch already sized); returns copies of the outputs."""
        if not plan.direct:
            if plan.key not in self._runners:
                self._runners[plan.key] = self.interpreter.get_signature_runner(plan.key)
            return dict(self._runners[plan.key](**arrays))  # resizes and allocates itself; returns copies
        shapes = {t.index: arrays[t.name].shape for t in plan.inputs}
        if shapes != self._shapes:
            self._shapes = {}  # a failed resize must not leave a stale cache behind
            for index, shape in shapes.items():
                self.interpreter.resize_tensor_input(index, shape, strict=False)
            self.interpreter.allocate_tensors()
            self._shapes = shapes
        for tensor in plan.inputs:
            self.interpreter.set_tensor(tensor.index, arrays[tensor.name])
        self.interpreter.invoke()
        return {t.name: self.interpreter.get_tensor(t.index) for t in plan.outputs}  # get_tensor copies


class TFLiteBackend:
    """Runs one .tflite variant with a pool of LiteRT interpreters.

    `num_threads` is set on every interpreter (LiteRT's default is 1); `pool_size` interpreters
    let that many batches run at once, so a node uses up to num_threads * pool_size cores.
    `allowed_batch_sizes` (ascending) pads each batch up to the next allowed size so interpreters
    see few distinct shapes; larger batches run in chunks of the largest size. Models converted
    with a fixed batch dimension always run in padded chunks of that size. With `on_clipped`, each
    call's inputs that a quantized (int8) input tensor would clip are counted and reported there.

    NOTE: a LiteRT interpreter is not thread-safe. predict() is: it takes an interpreter from a
    stack, blocking until one is free, and puts it back when done (LIFO keeps the most recently
    used interpreter, with warm caches and shapes, busy under light load). LiteRT releases the
    GIL while invoking, so pool_size interpreters do run in parallel.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        variant: str,
        num_threads: int,
        pool_size: int,
        allowed_batch_sizes: Sequence[int] = (),
        on_clipped: ClipCallback | None = None,
    ) -> None:
        if num_threads < 1 or pool_size < 1:
            raise ValueError(f"num_threads ({num_threads}) and pool_size ({pool_size}) must be >= 1")
        if any(size < 1 for size in allowed_batch_sizes):
            raise ValueError(f"allowed_batch_sizes must be positive, got {list(allowed_batch_sizes)}")
        self.path = Path(model_path)
        self.variant = variant
        self.num_threads = num_threads
        self.pool_size = pool_size
        self.allowed_batch_sizes = tuple(sorted(set(allowed_batch_sizes)))
        self._on_clipped = on_clipped
        self._pool: queue.LifoQueue[_Slot] | None = None
        self._plans: dict[str, _Plan] = {}
        self._signatures: dict[str, SignatureSpec] = {}

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]:
        return self._signatures

    def load(self) -> None:
        """Build `pool_size` interpreters and read the signatures. Raises ModelLoadError."""
        slots = [_Slot(self._open_interpreter()) for _ in range(self.pool_size)]
        plans = _read_plans(slots[0].interpreter, self._describe())
        pool: queue.LifoQueue[_Slot] = queue.LifoQueue()
        for slot in slots:
            pool.put(slot)
        self._plans = plans
        self._signatures = {name: plan.spec(name) for name, plan in plans.items()}
        self._pool = pool
        log.info(
            "loaded %s: %d interpreter(s) x %d thread(s), signatures %s",
            self._describe(),
            self.pool_size,
            self.num_threads,
            sorted(plans),
        )

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `signature` on a batch; returns float outputs (owned copies) keyed by output name.

        Raises NotFound (unknown signature), InvalidArgument (missing input, uneven rows),
        Unavailable (unloaded) or ServingError (the interpreter failed).
        """
        plan = self._plans.get(signature)
        if plan is None:
            raise NotFound(f"signature {signature!r} not found in {self._describe()}")
        pool = self._pool
        if pool is None:
            raise Unavailable(f"{self._describe()} is not loaded")
        arrays, rows = _encode_inputs(plan, inputs)
        if self._on_clipped is not None:
            self._report_clipping(plan, inputs)
        slot = pool.get()
        try:
            raw = [_run_chunk(slot, plan, arrays, chunk) for chunk in self._chunks(plan, rows)]
        except (ValueError, RuntimeError) as exc:
            raise ServingError(f"{self._describe()} failed on {rows} row(s): {_first_line(exc)}") from exc
        finally:
            pool.put(slot)
        return {t.name: t.decode(_concat([part[t.name] for part in raw])) for t in plan.outputs}

    def _report_clipping(self, plan: _Plan, inputs: Mapping[str, np.ndarray]) -> None:
        for tensor in plan.inputs:
            if tensor.quantized:
                count = tensor.clipped(inputs[tensor.name])
                if count:
                    self._on_clipped(tensor.name, count)

    def worker_predict_fns(self, signature: str) -> list[PredictFn]:
        """One copy of the model (its interpreter pool serves every worker): one callable."""
        return [partial(self.predict, signature)]

    def unload(self) -> None:
        """Drop the interpreters. In-flight calls finish on the interpreter they hold."""
        self._pool = None

    def _chunks(self, plan: _Plan, rows: int) -> list[tuple[int, int, int]]:
        """(start, stop, padded_rows) for each interpreter call that covers `rows` rows."""
        limit = plan.fixed_batch or (self.allowed_batch_sizes[-1] if self.allowed_batch_sizes else None)
        if limit is None:
            return [(0, rows, max(rows, 1))]  # an empty batch runs one zero row
        chunks = []
        for start in range(0, max(rows, 1), limit):
            stop = min(start + limit, rows)
            padded = plan.fixed_batch or next(s for s in self.allowed_batch_sizes if s >= max(stop - start, 1))
            chunks.append((start, stop, padded))
        return chunks

    def _open_interpreter(self) -> Interpreter:
        try:
            interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
            interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError for missing or corrupt files
            raise ModelLoadError(f"cannot load {self._describe()}: {_first_line(exc)}") from exc
        return interpreter

    def _describe(self) -> str:
        return f"TFLite variant {self.variant!r} ({self.path})"


def _read_plans(interpreter: Interpreter, where: str) -> dict[str, _Plan]:
    """One plan per signature; the first is exposed as serving_default when that name is missing."""
    keys = list(interpreter.get_signature_list())
    direct = interpreter.num_subgraphs() == 1
    try:
        if not keys:  # converted without signatures: raw tensors, names without ":0"
            return {DEFAULT_SIGNATURE: _plan(None, interpreter.get_input_details(), interpreter.get_output_details())}
        plans = {}
        for key in keys:
            runner = interpreter.get_signature_runner(key)
            plan = _plan(key, runner.get_input_details(), runner.get_output_details(), direct=direct)
            name = DEFAULT_SIGNATURE if key == keys[0] and DEFAULT_SIGNATURE not in keys else key
            plans[name] = plan
        return plans
    except ValueError as exc:
        raise ModelLoadError(f"{where}: {exc}") from exc


def _plan(key: str | None, inputs, outputs, direct: bool = True) -> _Plan:
    """Build a plan from LiteRT tensor details (a list for raw tensors, a name->details dict for signatures)."""
    ins, outs = _tensors(inputs), _tensors(outputs)
    for tensor in (*ins, *outs):
        if len(tensor.shape) == 0:
            raise ValueError(f"tensor {tensor.name!r} is a scalar; a batch dimension is required")
    fixed = {int(t.shape[0]) for t in ins if t.shape[0] >= 0}
    if len(fixed) > 1:
        raise ValueError(f"inputs disagree on their fixed batch size: {sorted(fixed)}")
    return _Plan(key, ins, outs, direct or key is None, fixed.pop() if fixed else None)


def _tensors(details) -> tuple[_Tensor, ...]:
    items = details.items() if isinstance(details, dict) else ((d["name"].split(":")[0], d) for d in details)
    tensors = []
    for name, detail in items:
        params = detail["quantization_parameters"]
        if len(params["scales"]) > 1:
            raise ValueError(f"tensor {name!r} is quantized per axis; only per-tensor I/O quantization is supported")
        scale, zero_point = detail["quantization"]
        shape = tuple(int(d) for d in detail["shape_signature"])
        tensors.append(
            _Tensor(name, int(detail["index"]), np.dtype(detail["dtype"]), shape, float(scale), int(zero_point))
        )
    return tuple(tensors)


def _encode_inputs(plan: _Plan, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Inputs in interpreter dtypes (quantized where needed), and their shared row count.

    Shapes are checked here because LiteRT resizes non-strictly and would accept a wrong one.
    """
    arrays = {}
    for tensor in plan.inputs:
        if tensor.name not in inputs:
            raise InvalidArgument(f"inputs: missing input {tensor.name!r}")
        value = np.asarray(inputs[tensor.name])
        if value.ndim != len(tensor.shape) or any(
            want >= 0 and want != got for want, got in zip(tensor.shape[1:], value.shape[1:], strict=False)
        ):
            raise InvalidArgument(
                f"inputs: {tensor.name!r} has shape {value.shape}, expected {tensor.client_spec().shape}"
            )
        try:
            arrays[tensor.name] = tensor.encode(value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"inputs: {tensor.name!r} cannot be converted to {tensor.dtype}: {exc}") from exc
    rows = {array.shape[0] for array in arrays.values()}
    if len(rows) != 1:
        raise InvalidArgument("inputs: every input needs the same leading (batch) dimension")
    return arrays, rows.pop()


def _run_chunk(slot: _Slot, plan: _Plan, arrays: Mapping[str, np.ndarray], chunk: tuple[int, int, int]):
    """Run rows [start, stop) padded to `padded` rows; returns outputs cut back to stop - start rows."""
    start, stop, padded = chunk
    outputs = slot.run(plan, {name: _pad(array[start:stop], padded) for name, array in arrays.items()})
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != padded:
            raise RuntimeError(f"output {name!r} has shape {value.shape}, not {padded} rows: cannot split a batch")
    return {name: value[: stop - start] for name, value in outputs.items()}


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """Pad to `size` rows by repeating the last row (zeros if there is none)."""
    missing = size - rows.shape[0]
    if missing == 0:
        return rows
    if rows.shape[0] == 0:
        return np.zeros((size, *rows.shape[1:]), dtype=rows.dtype)
    return np.concatenate([rows, np.repeat(rows[-1:], missing, axis=0)])


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
