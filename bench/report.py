"""Cost of the evaluation report: its own time against detect()'s over the same images.

    python bench/report.py --images 500 [--weights PATH] [--min-confidence 0.0]

Builds the shapes model (samples/shapes.py, ``ShapesConfig``, 128 px; random weights unless
--weights), draws ``--images`` held-out shapes images and, after a warm-up:

1. times ``detect()`` alone over the images, one at a time ("detect_only_s");
2. runs ``mrcnn.report.report(model, dataset, out_dir=...)`` over the same images, which
   splits its time into reading the images and masks ("read_s"), ``detect()``
   ("detect_s") and its own work ("report_s": RLE encoding, pycocotools' bbox and segm
   evaluation, the confusion matrix, the figures, the gallery and the files; "write_s" is
   the files alone).

The figure is ``report_s / detect_s`` (one run: both parts under the same load; the
machine may be shared). Memory: the process RSS after image 100 and after the last image,
and the JSON size of what the report keeps per image (RLEs). With ``--min-confidence 0``
the model returns ``DETECTION_MAX_INSTANCES`` (16) detections an image, the heaviest case
for the report. Prints one JSON object.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--weights", default=None, help="shapes .h5 weights (default random)")
    parser.add_argument("--min-confidence", type=float, default=None,
                        help="DETECTION_MIN_CONFIDENCE of the model (default: ShapesConfig's "
                             "0.5; 0 fills every detection slot)")
    parser.add_argument("--gallery", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=5)
    return parser.parse_args(argv)


def rss_mb():
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class MemoryProbe:
    """A report() progress hook that records the RSS after image 100 and after the last."""

    def __init__(self, total, at=100):
        self.total, self.at, self.done, self.samples = total, at, 0, {}

    def step(self, count=1):
        before = self.done
        self.done += count
        if before < self.at <= self.done:
            self.samples["rss_mb_at_100"] = rss_mb()
        if self.done >= self.total:
            self.samples["rss_mb_at_last"] = rss_mb()


def main(argv=None):
    args = parse_args(argv)
    from mrcnn.model import MaskRCNN
    from mrcnn.report import report
    from samples import shapes

    class BenchConfig(shapes.ShapesConfig):
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        if args.min_confidence is not None:
            DETECTION_MIN_CONFIDENCE = args.min_confidence

    config = BenchConfig()
    model = MaskRCNN("inference", config, tempfile.mkdtemp(prefix="bench_report_"))
    if args.weights:
        model.load_weights(args.weights, by_name=True)
    dataset = shapes.make_dataset(args.images, shapes.TEST_SEED)
    warm = shapes.make_dataset(args.warmup, shapes.VAL_SEED)
    for i in warm.image_ids:
        model.detect([warm.load_image(i)])

    per_image = []
    for i in dataset.image_ids:
        image = dataset.load_image(i)
        started = time.perf_counter()
        model.detect([image])
        per_image.append(time.perf_counter() - started)

    probe = MemoryProbe(args.images)
    out = tempfile.mkdtemp(prefix="bench_report_out_")
    started = time.perf_counter()
    result = report(model, dataset, out_dir=out, gallery=args.gallery, progress=probe)
    total = time.perf_counter() - started
    timings = result.timings
    kept = len(json.dumps(result.detections)) + len(json.dumps(result.ground_truth))
    figures = {
        "images": len(result.images),
        "detections_per_image": round(len(result.detections) / len(result.images), 2),
        "gt_per_image": round(len(result.ground_truth["annotations"]) / len(result.images), 2),
        "detect_only_s": round(sum(per_image), 3),
        "detect_only_median_ms": round(1000 * statistics.median(per_image), 2),
        "report_run_total_s": round(total, 3),
        "read_s": round(timings["read_s"], 3),
        "detect_s": round(timings["detect_s"], 3),
        "report_s": round(timings["report_s"], 3),
        "write_s": round(timings["write_s"], 3),
        "report_over_detect": round(timings["report_s"] / timings["detect_s"], 4),
        "rss_mb_at_100": round(probe.samples.get("rss_mb_at_100", float("nan")), 1),
        "rss_mb_at_last": round(probe.samples.get("rss_mb_at_last", float("nan")), 1),
        "kept_json_bytes_per_image": round(kept / len(result.images)),
        "model": "ShapesConfig 128 px, " + ("weights " + args.weights if args.weights
                                            else "random weights"),
        "min_confidence": config.DETECTION_MIN_CONFIDENCE,
    }
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
