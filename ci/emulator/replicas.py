"""Which local processes a CustomJob becomes, and the environment each one gets.

Pure logic (no processes, no I/O besides picking free ports), so it is tested directly.
Worker pool 0 is the chief, pool 1 the workers, pool 2 the parameter servers, pool 3 the
evaluators, as on Vertex AI.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

TASK_TYPES = ("chief", "worker", "ps", "evaluator")
# The most processes one job ever starts here, whatever it asks for and whatever
# --max-local-replicas says: Vertex runs replicaCount 100000 on as many machines, but
# locally each replica is a process (and its ports, pipes and log file), so an unbounded
# count would exhaust the machine's processes or file descriptors.
LOCAL_REPLICA_LIMIT = 32


@dataclass(frozen=True)
class Replica:
    """One process of a job: its worker pool, index in the pool and loopback port."""

    pool: int
    index: int
    port: int

    @property
    def task_type(self) -> str:
        """``chief``, ``worker``, ``ps`` or ``evaluator``, from the pool."""
        return TASK_TYPES[self.pool]

    @property
    def name(self) -> str:
        """The replica's name as Vertex reports it (``workerpool0-0``)."""
        return f"workerpool{self.pool}-{self.index}"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as in TF_CONFIG."""
        return f"127.0.0.1:{self.port}"


def plan(worker_pool_specs: list[dict], max_local: int | None = None):
    """The replicas to start, and notes for the job log (e.g. that a cap applied).

    Returns ``(replicas, notes)``. A pool spec that is empty (Vertex allows ``{}`` to skip
    a pool) has no replicas; pool 0 always has exactly one. ``max_local`` (the emulator's
    ``--max-local-replicas``) and :data:`LOCAL_REPLICA_LIMIT` cap the processes: replicas
    beyond the cap are not started, and a note says so.
    """
    if len(worker_pool_specs) > len(TASK_TYPES):
        raise ValueError(f"at most {len(TASK_TYPES)} worker pools, got {len(worker_pool_specs)}")
    counts = []
    for pool, spec in enumerate(worker_pool_specs):
        count = int(spec.get("replicaCount", 1)) if spec else 0
        counts.append(1 if pool == 0 else max(count, 0))
    notes = []
    requested = sum(counts)
    cap = LOCAL_REPLICA_LIMIT if max_local is None else max(1, min(max_local, LOCAL_REPLICA_LIMIT))
    if requested > cap:
        # Drop replicas from the last pools first: evaluators, then ps, then workers.
        excess = requested - cap
        for pool in reversed(range(1, len(counts))):
            dropped = min(counts[pool], excess)
            counts[pool] -= dropped
            excess -= dropped
        why = (
            f"--max-local-replicas={max_local}"
            if max_local is not None and max_local <= LOCAL_REPLICA_LIMIT
            else f"the emulator's limit of {LOCAL_REPLICA_LIMIT} local processes a job"
        )
        notes.append(
            f"emulator: the job asks for {requested} replicas; {why} "
            f"caps it at {sum(counts)} local processes "
            f"(per pool: {', '.join(map(str, counts))})."
        )
    ports = free_ports(sum(counts))
    replicas = [
        Replica(pool, index, ports.pop())
        for pool, count in enumerate(counts)
        for index in range(count)
    ]
    return replicas, notes


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cluster_env(
    replicas: list[Replica], me: Replica, job_spec: dict | None = None, trial: str | None = None
) -> dict[str, str]:
    """``TF_CONFIG`` and ``CLUSTER_SPEC`` for ``me``; empty for a single-replica job.

    As on Vertex: ``cluster``, ``task`` (``type``, ``index``, and ``trial``, the trial's id,
    in a hyperparameter tuning trial), ``job`` (the CustomJobSpec as a dict) and
    ``environment: "cloud"``.
    """
    if len(replicas) < 2:
        return {}
    cluster: dict[str, list[str]] = {}
    pools: dict[str, list[str]] = {}
    for r in replicas:
        pools.setdefault(f"workerpool{r.pool}", []).append(r.address)
        # An evaluator is not a member of the training cluster in TensorFlow's model.
        if r.task_type != "evaluator":
            cluster.setdefault(r.task_type, []).append(r.address)
    extra = {"trial": trial} if trial else {}
    job = {"job": job_spec} if job_spec is not None else {}
    tf_config = {
        "cluster": cluster,
        "task": {"type": me.task_type, "index": me.index, **extra},
        **job,
        "environment": "cloud",
    }
    cluster_spec = {
        "cluster": pools,
        "task": {"type": f"workerpool{me.pool}", "index": me.index, **extra},
        **job,
        "environment": "cloud",
    }
    return {"TF_CONFIG": json.dumps(tf_config), "CLUSTER_SPEC": json.dumps(cluster_spec)}


def output_env(job_spec: dict) -> dict[str, str]:
    """``AIP_MODEL_DIR`` and friends, under ``baseOutputDirectory`` when the job has one."""
    prefix = (job_spec.get("baseOutputDirectory") or {}).get("outputUriPrefix")
    if not prefix:
        return {}
    base = prefix.rstrip("/")
    return {
        "AIP_MODEL_DIR": f"{base}/model/",
        "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/",
    }
