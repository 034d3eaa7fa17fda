"""Data-parallel training: which strategy, who is chief, and local clusters for tests.

TensorFlow uses tf.distribute and JAX keras.distribution (mrcnn.backend holds both).

TensorFlow. One machine, several GPUs: ``GPU_COUNT > 1`` gives a MirroredStrategy over the
first GPU_COUNT GPUs. Several machines: set ``TF_CONFIG`` on each (see the README) and every
process gets a MultiWorkerMirroredStrategy; each worker then feeds BATCH_SIZE images a step
(IMAGES_PER_GPU per replica), the global batch being BATCH_SIZE * workers. A strategy
passed to ``MaskRCNN(..., strategy=...)`` wins over both.

JAX. One machine: ``GPU_COUNT > 1`` gives a ``keras.distribution.DataParallel`` over the
first GPU_COUNT local devices (on a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
makes N devices). The model and its optimizer are built, and ``fit`` runs, in the
distribution's scope; the PyDataset feeds the global batch of BATCH_SIZE images and Keras
splits it over the devices, so each device takes IMAGES_PER_GPU images; the losses are means
over the global batch (the same arithmetic as one device taking all BATCH_SIZE images, up to
the rounding of the sharded sums). Several machines: call ``initialize_jax_distributed()``
in every process before building the model (Keras reads KERAS_DISTRIBUTION_JOB_ADDRESSES,
KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID, or the arguments); the
model then trains under a DataParallel over every process's devices, process 0 writes the
checkpoints and logs, and each process feeds BATCH_SIZE images a step (its share of the
global batch, BATCH_SIZE * processes). ``strategy=keras.distribution.DataParallel(...)``
(or any keras.distribution.Distribution) wins over both. Not tested across hosts here.
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
    """The distribution to train ``config`` under, or None for the default device.

    TensorFlow: a tf.distribute strategy (``strategy`` as given; MultiWorkerMirroredStrategy
    when TF_CONFIG names more than one task; MirroredStrategy over GPU_COUNT GPUs when
    GPU_COUNT > 1). JAX: a ``keras.distribution.DataParallel`` (``strategy`` as given, a
    keras.distribution.Distribution; else over GPU_COUNT local devices when GPU_COUNT > 1, or
    over every process's devices after ``jax.distributed`` was initialized, see
    initialize_jax_distributed). multi_worker: False ignores TF_CONFIG / other processes
    (inference models). Raises mrcnn.backend.BackendError when TF_CONFIG names several
    workers and Keras does not run on TensorFlow.
    """
    from mrcnn import backend
    return backend.get().make_strategy(config, strategy, multi_worker)


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and TensorBoard: True without a
    multi-worker strategy; else the task "chief", or worker 0 when there is no chief
    (TensorFlow), or process 0 (JAX)."""
    from mrcnn import backend
    return backend.get().is_chief(strategy)


def worker_replicas(strategy):
    """(replicas fed separately by the input pipeline, input pipelines) of a strategy:
    (1, 1) without one; on JAX (processes, processes), each process feeding BATCH_SIZE
    images a step that Keras splits over its devices."""
    from mrcnn import backend
    return backend.get().worker_replicas(strategy)


def initialize_jax_distributed(coordinator=None, num_processes=None, process_id=None):
    """Join a multi-host JAX job (``keras.distribution.initialize``; JAX backend only).

    Call once per process before building a model; with no arguments Keras reads
    KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and
    KERAS_DISTRIBUTION_PROCESS_ID (or the cluster's own environment, e.g. SLURM or TPU).
    Afterwards ``make_strategy`` gives a DataParallel over every process's devices; each
    process feeds BATCH_SIZE images a step (its share of the global batch).
    """
    from mrcnn import backend
    backend.require("jax", "initialize_jax_distributed")
    import keras
    keras.distribution.initialize(job_addresses=coordinator, num_processes=num_processes,
                                  process_id=process_id)


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
