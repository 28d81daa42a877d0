"""Where this process stands in a training cluster, from ``TF_CONFIG``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

# Replica kinds that take part in all-reduce training; others have nothing to do.
_TRAINING_TASKS = ("chief", "worker")


@dataclass(frozen=True)
class Role:
    task_type: str
    index: int
    cluster: dict

    @property
    def idle(self) -> bool:
        """Parameter servers and evaluators: all-reduce training has no use for them."""
        return self.task_type not in _TRAINING_TASKS

    @property
    def chief(self) -> bool:
        """The chief writes the outputs; without a chief task, worker 0 does."""
        if "chief" in self.cluster or not self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.index == 0

    @property
    def replicas(self) -> int:
        return max(1, sum(len(self.cluster.get(kind, [])) for kind in _TRAINING_TASKS))

    @property
    def rank(self) -> int:
        """Position among the training replicas: the chief first, then the workers."""
        if self.task_type == "worker":
            return len(self.cluster.get("chief", [])) + self.index
        return 0


def share(files: list[str], current: Role) -> tuple[list[str], bool]:
    """The files this replica reads, and whether that is a disjoint share of them.

    File-level sharding: with at least as many files as training replicas, replica ``r``
    of ``n`` reads files ``r, r+n, r+2n…`` of the sorted list (disjoint, the same on every
    run). With fewer files than replicas every replica reads them all and keeps its share
    of the batches instead (``tf.data``'s DATA auto-sharding): correct, but each replica
    then parses every row.
    """
    n = current.replicas
    if n <= 1 or len(files) < n:
        return list(files), False
    return list(files[current.rank :: n]), True


def role() -> Role:
    """This process's role; a lone chief when ``TF_CONFIG`` is unset."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return Role("chief", 0, {})
    try:
        config = json.loads(raw)
        task = config.get("task") or {}
        cluster = config.get("cluster") or {}
        return Role(str(task.get("type", "chief")), int(task.get("index", 0)), cluster)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"TF_CONFIG is not valid: {exc}: {raw!r}") from None


def strategy(current: Role):
    """MultiWorkerMirroredStrategy for several training replicas, else the default strategy."""
    import tensorflow as tf

    if current.replicas <= 1:
        return tf.distribute.get_strategy()
    # The strategy reads TF_CONFIG; it must only see the replicas that train.
    training = {k: v for k, v in current.cluster.items() if k in _TRAINING_TASKS}
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": training, "task": {"type": current.task_type, "index": current.index}}
    )
    return tf.distribute.MultiWorkerMirroredStrategy()
