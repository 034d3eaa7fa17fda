"""A JAX training process for tests/test_jax_training.py (``python -m tests.jax_train_worker``).

    KERAS_BACKEND=jax python -m tests.jax_train_worker --out DIR --task NAME [options]

Trains a SmallCompactConfig-sized model (NUM_CLASSES 3, GPU_COUNT x IMAGES_PER_GPU images
a step) on BlobDataset with MaskRCNN.train and writes DIR/weights_<task>.npz (every weight
after training, keyed by variable path; with --save-initial also DIR/initial_<task>.npz)
and DIR/logs_<task>/ (the model_dir); with several --layers stages also
DIR/weights_<task>_stage<i>.npz after each, and with --map-limit DIR/map_<task>.npz, the
mrcnn_mask kernel of the inference model at each evaluation. Several local devices on a CPU:
XLA_FLAGS=--xla_force_host_platform_device_count=N in the environment, then
--gpu-count N builds and trains under keras.distribution.DataParallel.

Also writes DIR/report_<task>.json: the History's logs, each train step's logs, the
optimizer's class, the mask head's compute dtype, the weights' dtypes, the devices JAX
sees and the final loss scale (LossScaleOptimizer only, else null); --dtype-policy sets
Config.DTYPE_POLICY.
--count-compiles: write DIR/compiles_<task>.json, {jitted function name: compilations}
(JAX logs each lowering to XLA at DEBUG level on jax._src.interpreters.pxla).
--kill-after-step N: once step N of the run has been checkpointed, write DIR/killme and
sleep, for the caller to SIGKILL; --resume: continue from find_last().
"""
import argparse
import collections
import json
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--gpu-count", type=int, default=1)
    parser.add_argument("--images-per-gpu", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--validation-steps", type=int, default=0)
    parser.add_argument("--layers", default="all",
                        help="layer group, or groups separated by commas: one train() "
                             "call each, stage i training to epoch epochs + i")
    parser.add_argument("--augment", action="store_true",
                        help="albumentations horizontal flips (p=0.5)")
    parser.add_argument("--map-limit", type=int, default=0,
                        help="add a MeanAPCallback on that many training images")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--kill-after-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--count-compiles", action="store_true")
    parser.add_argument("--save-initial", action="store_true")
    parser.add_argument("--dtype-policy", default="float32")
    parser.add_argument("--lr", type=float, default=0.02)
    return parser.parse_args(argv)


class CompileCounter(logging.Handler):
    """Counts JAX's "Compiling <module> ..." records by module name."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.counts = collections.Counter()

    def emit(self, record):
        if record.msg.startswith("Compiling %s") and record.args:
            self.counts[str(record.args[0])] += 1


def worker_config(args):
    from mrcnn.compact import SmallCompactConfig

    class WorkerConfig(SmallCompactConfig):
        NAME = "tiny"
        NUM_CLASSES = 3
        GPU_COUNT = args.gpu_count
        IMAGES_PER_GPU = args.images_per_gpu
        STEPS_PER_EPOCH = args.steps
        VALIDATION_STEPS = args.validation_steps
        CHECKPOINT_EVERY_STEPS = args.checkpoint_every
        DTYPE_POLICY = args.dtype_policy

    return WorkerConfig()


def jax_devices():
    import jax
    return jax.devices()


def weights_by_path(keras_model):
    import keras
    import numpy as np
    return {v.path: np.asarray(keras.ops.convert_to_numpy(v)) for v in keras_model.weights}


def main(argv=None):
    args = parse_args(argv)
    counter = None
    if args.count_compiles:
        counter = CompileCounter()
        pxla = logging.getLogger("jax._src.interpreters.pxla")
        pxla.setLevel(logging.DEBUG)
        pxla.addHandler(counter)
        pxla.propagate = False

    import keras
    import numpy as np

    from mrcnn.model import MaskRCNN
    from tests.synthetic import BlobDataset

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"run with KERAS_BACKEND=jax, got {keras.backend.backend()!r}")

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
    model = MaskRCNN("training", worker_config(args), os.path.join(args.out, f"logs_{args.task}"))
    if args.resume:
        model.load_weights(model.find_last(), by_name=True)
    if args.save_initial:
        np.savez(os.path.join(args.out, f"initial_{args.task}.npz"),
                 **weights_by_path(model.keras_model))
    class StepLosses(keras.callbacks.Callback):
        """Each train step's logs (the metrics so far in the epoch), for the report."""

        def __init__(self):
            super().__init__()
            self.steps = []

        def on_train_batch_end(self, batch, logs=None):
            self.steps.append({k: float(v) for k, v in (logs or {}).items()})

    class FirstStepWeights(keras.callbacks.Callback):
        """The weights after the run's first step, DIR/weights_<task>_step1.npz (the trainer's
        state is copied into the variables first: it holds them apart during an epoch)."""

        def __init__(self):
            super().__init__()
            self.saved = False

        def on_train_batch_end(self, batch, logs=None):
            if not self.saved:
                from mrcnn import backend
                backend.get().sync_model_state(self.model)
                np.savez(os.path.join(args.out, f"weights_{args.task}_step1.npz"),
                         **weights_by_path(self.model))
                self.saved = True

    step_losses = StepLosses()
    callbacks = [step_losses, FirstStepWeights()]
    if args.kill_after_step:
        callbacks.append(KillSwitch(args.kill_after_step))
    dataset = BlobDataset(count=8, max_objects=2, seed=3)
    evaluated = {}
    if args.map_limit:
        from mrcnn.evaluation import MeanAPCallback, evaluate_dataset

        def evaluate_fn(inference, data, image_ids=None, limit=None):
            # What the callback copied into the inference model at this epoch's end.
            evaluated[f"epoch{len(evaluated) + 1}"] = keras.ops.convert_to_numpy(
                inference.keras_model.get_layer("mrcnn_mask").kernel)
            return evaluate_dataset(inference, data, image_ids=image_ids, limit=limit)

        callbacks.append(MeanAPCallback(model, dataset, limit=args.map_limit,
                                        evaluate_fn=evaluate_fn, verbose=0))
    augmentation = None
    if args.augment:
        import albumentations as A
        augmentation = A.HorizontalFlip(p=0.5)
    merged = {}
    stages = args.layers.split(",")
    for stage, layers in enumerate(stages):
        history = model.train(dataset, dataset if args.validation_steps else None,
                              learning_rate=args.lr, epochs=args.epochs + stage, layers=layers,
                              augmentation=augmentation, custom_callbacks=callbacks, verbose=0)
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(values)
        if len(stages) > 1:
            np.savez(os.path.join(args.out, f"weights_{args.task}_stage{stage}.npz"),
                     **weights_by_path(model.keras_model))
    if evaluated:
        np.savez(os.path.join(args.out, f"map_{args.task}.npz"), **evaluated)
    np.savez(os.path.join(args.out, f"weights_{args.task}.npz"),
             **weights_by_path(model.keras_model))
    keras_model = model.keras_model
    report = {
        "history": {k: [float(v) for v in values] for k, values in merged.items()},
        "steps": step_losses.steps,
        "optimizer": type(keras_model.optimizer).__name__,
        "mask_compute_dtype": keras_model.get_layer("mrcnn_mask").compute_dtype,
        "weight_dtypes": sorted({str(v.dtype) for v in keras_model.weights}),
        "devices": len(jax_devices()),
        "loss_scale": (float(keras.ops.convert_to_numpy(keras_model.optimizer.dynamic_scale))
                       if hasattr(keras_model.optimizer, "dynamic_scale") else None),
    }
    with open(os.path.join(args.out, f"report_{args.task}.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    if counter is not None:
        with open(os.path.join(args.out, f"compiles_{args.task}.json"), "w") as f:
            json.dump(dict(counter.counts), f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
