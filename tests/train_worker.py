"""A training process for the multi-process tests (run as ``python -m tests.train_worker``).

    python -m tests.train_worker --role worker --out DIR      (TF_CONFIG set by the caller)
    python -m tests.train_worker --role mirrored --out DIR    (one process, 2 logical CPUs)
    python -m tests.train_worker --role single --out DIR [--kill-after-step N]

Trains TinyConfig (1 image per replica) on BlobDataset and writes DIR/weights_<task>.npz
(every weight of the model after training, in get_weights order) and DIR/logs_<task>/
(the model_dir). --kill-after-step N: after step N of the run has been checkpointed, write
DIR/killme and sleep, for the caller to SIGKILL; --resume: continue from find_last().
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["worker", "mirrored", "single"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=3, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--images-per-replica", type=int, default=1)
    parser.add_argument("--layers", default="all")
    parser.add_argument("--pipeline", default="auto")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--kill-after-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--initial-weights", default=None)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--save-initial", action="store_true",
                        help="also write DIR/initial_<task>.npz before training")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf

    # Threads and strategies first: MultiWorkerMirroredStrategy must exist before any other
    # TF op. One intra-op thread makes every kernel's summation order fixed.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.role == "worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    else:
        task = args.role
        strategy = None
        if args.role == "mirrored":
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    import keras
    import numpy as np

    from mrcnn.model import MaskRCNN
    from tests.conftest import TinyConfig
    from tests.synthetic import BlobDataset

    class WorkerConfig(TinyConfig):
        NUM_CLASSES = 3
        IMAGES_PER_GPU = args.images_per_replica
        STEPS_PER_EPOCH = args.steps
        VALIDATION_STEPS = 0
        CHECKPOINT_EVERY_STEPS = args.checkpoint_every

    class KillSwitch(keras.callbacks.Callback):
        """After the checkpoint of the given run step is on disk: flag it, then wait."""

        def __init__(self, step):
            super().__init__()
            self.step, self.done = step, 0

        def on_train_batch_end(self, batch, logs=None):
            self.done += 1
            if self.done == self.step:
                with open(os.path.join(args.out, "killme"), "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(600)

    keras.utils.set_random_seed(0)
    logs = os.path.join(args.out, f"logs_{task}")
    model = MaskRCNN("training", WorkerConfig(), logs, strategy=strategy)
    if args.resume:
        model.load_weights(model.find_last(), by_name=True)
    elif args.initial_weights:
        model.load_weights(args.initial_weights)
    if args.save_initial:
        np.savez(os.path.join(args.out, f"initial_{task}.npz"), *model.keras_model.get_weights())
    callbacks = [KillSwitch(args.kill_after_step)] if args.kill_after_step else []
    model.train(BlobDataset(count=8, max_objects=2, seed=3), None, learning_rate=0.02,
                epochs=args.epochs, layers=args.layers, custom_callbacks=callbacks, verbose=0,
                pipeline=args.pipeline)
    weights = model.keras_model.get_weights()
    np.savez(os.path.join(args.out, f"weights_{task}.npz"), *weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
