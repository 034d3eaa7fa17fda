"""tf.distribute training: two worker processes under MultiWorkerMirroredStrategy against
one process under MirroredStrategy; TF_CONFIG parsing and chief selection."""
import json
import os

import numpy as np
import pytest

from mrcnn import distribute
from tests.multiprocess import Processes, worker_command


def _weights(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_two_workers_match_each_other_and_one_process_on_the_same_global_batches(tmp_path):
    """2 workers x 1 replica x 1 image vs 1 process x 2 replicas (logical CPUs) x 1 image.

    Both see the same global batches (mrcnn.data.BatchPlan), compute each replica's loss on
    its own image and sum the replicas' gradient shares, so the updates are the same
    arithmetic: with one intra-op thread each kernel sums in a fixed order and the
    all-reduce of two values is a single commutative addition, which makes the weights
    bitwise equal (measured: max |difference| 0.0). The tolerance, 1e-6 absolute plus 1e-5
    relative, leaves room only for a summation-order change inside a collective
    implementation; a wrong batch, a missing all-reduce or a doubled gradient moves the
    weights by 1e-3 or more after these steps at learning rate 0.02.
    A plain process with one 2-image batch would differ by design: the losses are means
    over each replica's anchors and ROIs, not over the global batch.
    """
    args = ["--steps", "2", "--layers", "all"]
    with Processes(str(tmp_path)) as processes:
        workers = [processes.start(f"worker{i}", worker_command(tmp_path, "worker", *args),
                                   env={"TF_CONFIG": tf_config})
                   for i, tf_config in enumerate(distribute.local_cluster(2))]
        reference = processes.start("mirrored", worker_command(tmp_path, "mirrored", *args,
                                                               "--save-initial"))
        for process in workers + [reference]:
            processes.wait(process)

    chief, other = _weights(tmp_path / "weights_0.npz"), _weights(tmp_path / "weights_1.npz")
    single = _weights(tmp_path / "weights_mirrored.npz")
    initial = _weights(tmp_path / "initial_mirrored.npz")
    assert len(chief) == len(other) == len(single) > 300
    for a, b in zip(chief, other):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(chief, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single, initial) if a.size)
    assert moved > 1e-3, moved  # training did change the weights

    # Checkpoints and TensorBoard logs come from the chief only.
    chief_runs = os.listdir(tmp_path / "logs_0")
    assert len(chief_runs) == 1
    assert {"mask_rcnn_tiny_0001.h5", "mask_rcnn_tiny_0001.state.npz", "train"} <= set(
        os.listdir(tmp_path / "logs_0" / chief_runs[0]))
    assert not os.path.exists(tmp_path / "logs_1") or not any(
        files for _, _, files in os.walk(tmp_path / "logs_1"))


def test_tf_config_parsing_and_local_cluster():
    assert distribute.cluster_spec_from_env({}) is None
    assert distribute.cluster_spec_from_env({"TF_CONFIG": "  "}) is None
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON.*'{oops'"):
        distribute.cluster_spec_from_env({"TF_CONFIG": "{oops"})
    with pytest.raises(ValueError, match="'cluster' and 'task'"):
        distribute.cluster_spec_from_env({"TF_CONFIG": '{"task": {}}'})
    configs = [json.loads(c) for c in distribute.local_cluster(3)]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)
    assert distribute.worker_count(configs[0]) == 3
    assert distribute.worker_count({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}}) == 2
    with pytest.raises(ValueError, match="workers must be a positive int, got 0"):
        distribute.local_cluster(0)


def test_chief_is_the_chief_task_or_worker_zero():
    class Resolver:
        def __init__(self, task_type, task_id, cluster):
            self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

        def cluster_spec(self):
            spec = type("Spec", (), {})()
            spec.as_dict = lambda: self._cluster
            return spec

    class Strategy:
        def __init__(self, resolver):
            self.cluster_resolver = resolver

    workers = {"worker": ["a:1", "b:2"]}
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    assert distribute.is_chief(None)
    assert distribute.is_chief(Strategy(Resolver("worker", 0, workers)))
    assert not distribute.is_chief(Strategy(Resolver("worker", 1, workers)))
    assert distribute.is_chief(Strategy(Resolver("chief", 0, with_chief)))
    assert not distribute.is_chief(Strategy(Resolver("worker", 0, with_chief)))
    assert distribute.is_chief(Strategy(Resolver(None, None, {})))  # MirroredStrategy
