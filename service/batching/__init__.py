"""Dynamic batching: DynamicBatcher (asyncio queue, timer, admission) over pure-numpy merge/pad/split."""

from service.batching.batcher import DynamicBatcher, PredictFn
from service.batching.observer import BatchObserver, NullObserver, RejectReason

__all__ = ["BatchObserver", "DynamicBatcher", "NullObserver", "PredictFn", "RejectReason"]
