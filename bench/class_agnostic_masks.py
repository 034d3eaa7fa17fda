"""Class-agnostic vs per-class masks: a short shapes training run with each, then mAP.

    python bench/class_agnostic_masks.py --epochs 4 --steps 60 --images 1000 --limit 50

Trains the shapes model of samples/shapes.py from scratch twice in one process, with
``CLASS_AGNOSTIC_MASKS = False`` (matterport's one mask per class) and ``True`` (one mask
per ROI, He et al. 2017, section 4.2), with the same seeds, data, schedule and steps, and
evaluates each on the same held-out images (mAP@0.5 and mAP@[.5:.95], mask IoU, as
``samples/shapes.py evaluate``). Prints one JSON object: per setting the mAPs, the last
training losses and the training minutes (the machine may be shared: compare the mAPs,
not the minutes).
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60, help="training steps per epoch")
    parser.add_argument("--images", type=int, default=1000, help="training images")
    parser.add_argument("--limit", type=int, default=50, help="held-out evaluation images")
    parser.add_argument("--seed", type=int, default=0, help="Keras / TF seed of each run")
    return parser.parse_args(argv)


def run(agnostic, args, logs):
    """Train one shapes model and evaluate it: a dict of figures."""
    import keras

    from mrcnn.model import MaskRCNN
    from samples import shapes

    keras.utils.set_random_seed(args.seed)

    class TrainConfig(shapes.ShapesConfig):
        STEPS_PER_EPOCH = args.steps
        CLASS_AGNOSTIC_MASKS = agnostic

    config = TrainConfig()
    train_set = shapes.make_dataset(args.images, shapes.TRAIN_SEED)
    val_set = shapes.make_dataset(8, shapes.VAL_SEED)
    model = MaskRCNN("training", config, logs)
    total = args.epochs * args.steps
    schedule = shapes.lr_schedule_callback(config.LEARNING_RATE, total,
                                           warmup_steps=min(200, total // 10), first_step=0)
    started = time.time()
    history = model.train(train_set, val_set, learning_rate=config.LEARNING_RATE,
                          epochs=args.epochs, layers="all", custom_callbacks=[schedule],
                          verbose=0)
    minutes = (time.time() - started) / 60
    losses = {}
    if history is not None and getattr(history, "history", None):
        losses = {k: round(float(v[-1]), 4) for k, v in history.history.items()
                  if k.endswith("loss")}
    from mrcnn.checkpoints import epoch_checkpoints

    weights = os.path.join(model.log_dir, epoch_checkpoints(model.log_dir)[-1])
    del model

    inference = MaskRCNN("inference", shapes.inference_config(TrainConfig), logs)
    inference.load_weights(weights, by_name=True)
    scores = shapes.evaluate_model(inference, args.limit)
    mask_channels = int(inference.keras_model.get_layer("mrcnn_mask").output.shape[-1])
    return {"mAP50": round(float(scores["mAP50"]), 4), "mAP": round(float(scores["mAP"]), 4),
            "mask_channels": mask_channels, "train_minutes": round(minutes, 2),
            "final_losses": losses}


def main(argv=None):
    args = parse_args(argv)
    out = {"epochs": args.epochs, "steps_per_epoch": args.steps, "images": args.images,
           "eval_images": args.limit, "seed": args.seed}
    with tempfile.TemporaryDirectory() as logs:
        for agnostic in (False, True):
            key = "class_agnostic" if agnostic else "per_class"
            out[key] = run(agnostic, args, logs)
            print(f"# {key}: {out[key]}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
