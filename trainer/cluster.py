"""Where this process stands: one machine, or a worker of a multi-worker cluster.

Vertex AI describes the cluster in CLUSTER_SPEC (worker pools) and, for TensorFlow
containers, in TF_CONFIG too; plain TensorFlow only reads TF_CONFIG, so CLUSTER_SPEC is
translated when TF_CONFIG is absent. Only the chief writes the job dir.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass
class Cluster:
    workers: int          # processes training together
    task_type: str
    task_index: int

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and not self._has_chief)

    _has_chief: bool = False

    @property
    def distributed(self) -> bool:
        return self.workers > 1


def tf_config_from_cluster_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Vertex's worker pools -> TF_CONFIG: workerpool0 is the chief, workerpool1 the workers."""
    pools = spec.get("cluster", {})
    cluster: dict[str, list[str]] = {}
    if pools.get("workerpool0"):
        cluster["chief"] = list(pools["workerpool0"])
    if pools.get("workerpool1"):
        cluster["worker"] = list(pools["workerpool1"])
    task = spec.get("task", {})
    kind = {"workerpool0": "chief", "workerpool1": "worker"}.get(task.get("type", ""), "worker")
    return {"cluster": cluster, "task": {"type": kind, "index": int(task.get("index", 0))}}


def detect() -> Cluster:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw and os.environ.get("CLUSTER_SPEC"):
        tf_config = tf_config_from_cluster_spec(json.loads(os.environ["CLUSTER_SPEC"]))
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
        raw = os.environ["TF_CONFIG"]
    if not raw:
        return Cluster(1, "chief", 0)
    cfg = json.loads(raw)
    cluster = cfg.get("cluster", {})
    workers = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
    task = cfg.get("task", {})
    c = Cluster(max(1, workers), task.get("type", "worker"), int(task.get("index", 0)))
    c._has_chief = bool(cluster.get("chief"))
    return c
