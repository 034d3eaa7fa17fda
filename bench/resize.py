"""Resize benchmark: molding a 640 x 480 photo to 1024 x 1024 (IMAGE_RESIZE_MODE "square").

    python bench/resize.py --runs 30

Prints one JSON object with the median / min milliseconds of utils.resize_image (default
method "exact": matterport's pixels, bit for bit; also on a 640 x 427 crop, whose scale
takes the float64 path), of method "opencv" (the explicit approximate
option), of matterport's own call (skimage.transform.resize + astype + pad) and of
resize_mask on 30 instance masks, all measured alternately in the same process after a
warm-up, and the ratios of each to "exact". The photo is scikit-image's astronaut resized
to 640 x 480 once (a real image, so flat and busy regions both occur).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np
    import skimage.data
    import skimage.transform

    from mrcnn import utils

    photo = skimage.transform.resize(skimage.data.astronaut(), (480, 640), preserve_range=True,
                                     anti_aliasing=True).astype(np.uint8)
    # 640 x 427 -> 1024 x 683: 427 / 683 is not a multiple of a power of two, so the float64
    # path runs (640 x 480 -> 1024 x 768 takes the exact integer path).
    photo_427 = np.ascontiguousarray(photo[:427])
    masks = np.zeros((480, 640, 30), bool)
    for i in range(30):
        masks[10 * i:10 * i + 90, 15 * i:15 * i + 120, i] = True

    def matterport():
        h, w = photo.shape[:2]
        scale = 1024 / max(h, w)
        out = skimage.transform.resize(photo, (round(h * scale), round(w * scale)), order=1,
                                       mode="constant", cval=0, clip=True, preserve_range=True,
                                       anti_aliasing=False).astype(photo.dtype)
        top = (1024 - out.shape[0]) // 2
        return np.pad(out, [(top, 1024 - out.shape[0] - top), (0, 0), (0, 0)])

    cases = {
        "exact": lambda: utils.resize_image(photo, 800, 1024),
        "exact_640x427": lambda: utils.resize_image(photo_427, 800, 1024),
        "opencv": lambda: utils.resize_image(photo, 800, 1024, method="opencv"),
        "skimage_matterport": matterport,
        "resize_mask_30": lambda: utils.resize_mask(masks, 1.6, [(128, 128), (0, 0), (0, 0)]),
    }
    if not np.array_equal(cases["exact"]()[0], matterport()):
        raise SystemExit("exact resize_image differs from matterport's skimage call")
    times = {name: [] for name in cases}
    for run in range(args.warmup + args.runs):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            if run >= args.warmup:
                times[name].append(1e3 * (time.perf_counter() - start))
    result = {
        "photo": "skimage astronaut at 640 x 480 -> 1024 x 1024 square",
        "median_ms": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "min_ms": {k: round(min(v), 2) for k, v in times.items()},
        "ratio_to_exact": {k: round(statistics.median(v) / statistics.median(times["exact"]), 3)
                           for k, v in times.items()},
        "runs": args.runs,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
