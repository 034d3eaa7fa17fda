"""tf.distribute for training: which strategy, who is chief, and local clusters for tests.

One machine, several GPUs: ``GPU_COUNT > 1`` gives a MirroredStrategy over the first
GPU_COUNT GPUs. Several machines: set ``TF_CONFIG`` on each (see the README) and every
process gets a MultiWorkerMirroredStrategy; each worker then feeds BATCH_SIZE images a step
(IMAGES_PER_GPU per replica), the global batch being BATCH_SIZE * workers. A strategy
passed to ``MaskRCNN(..., strategy=...)`` wins over both.
"""
import json
import logging
import os
import socket

logger = logging.getLogger(__name__)


def cluster_spec_from_env(environ=None):
    """The parsed ``TF_CONFIG`` ({"cluster": ..., "task": ...}) or None when unset or empty.

    Raises ValueError naming the variable when it is not valid JSON or lacks cluster/task.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {raw[:200]!r}") from err
    if not isinstance(spec, dict) or "cluster" not in spec or "task" not in spec:
        raise ValueError(f"TF_CONFIG must have 'cluster' and 'task' keys, got {raw[:200]!r}")
    return spec


def worker_count(spec):
    """Number of training tasks (chief + workers) of a TF_CONFIG dict."""
    cluster = spec.get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def make_strategy(config, strategy=None, multi_worker=True):
    """The tf.distribute strategy to train ``config`` under, or None for the default device.

    strategy: a tf.distribute.Strategy to use as it is.
    Otherwise: MultiWorkerMirroredStrategy when TF_CONFIG names more than one task;
    MirroredStrategy over GPU_COUNT GPUs when GPU_COUNT > 1; else None.
    multi_worker: False ignores TF_CONFIG (inference models).
    """
    import tensorflow as tf
    if strategy is not None:
        if not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be a tf.distribute.Strategy, got {type(strategy).__name__}")
        return strategy
    spec = cluster_spec_from_env() if multi_worker else None
    if multi_worker and spec is not None and worker_count(spec) > 1:
        logger.info("TF_CONFIG names %d tasks: MultiWorkerMirroredStrategy (this task: %s)",
                    worker_count(spec), spec["task"])
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.GPU_COUNT == 1:
        return None
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < config.GPU_COUNT:
        raise ValueError(f"GPU_COUNT={config.GPU_COUNT} but {len(gpus)} GPU(s) are visible "
                         f"({[g.name for g in gpus]}); set GPU_COUNT to at most {max(1, len(gpus))}")
    devices = [g.name for g in gpus[:config.GPU_COUNT]]
    logger.info("training on %d GPUs with MirroredStrategy: %s", len(devices), devices)
    return tf.distribute.MirroredStrategy(devices=devices)


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and TensorBoard: True without a
    multi-worker strategy; else the task "chief", or worker 0 when there is no chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if strategy is None or resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_replicas(strategy):
    """(replicas in sync over all workers, input pipelines = workers) of a strategy (1, 1 without)."""
    if strategy is None:
        return 1, 1
    pipelines = 1
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        pipelines = max(1, sum(len(v) for k, v in resolver.cluster_spec().as_dict().items()
                               if k in ("chief", "worker")))
    return strategy.num_replicas_in_sync, pipelines


def free_ports(count, host="127.0.0.1"):
    """``count`` TCP ports free on ``host`` now (bound then released together)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_cluster(workers, host="127.0.0.1"):
    """TF_CONFIG strings of a ``workers``-process cluster on this machine (free ports).

    Returns a list: element i is the TF_CONFIG of worker i (worker 0 is the chief).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
            for i in range(workers)]
