"""Prepares CIFAR-10/100 or ImageNet as TFDS ArrayRecord, offline, without TensorFlow.

Usage:
    python -m lrr_jax.data.prepare --dataset=cifar10 \\
        --archive=/path/cifar-10-binary.tar.gz --data_dir=/path/tfds
    python -m lrr_jax.data.prepare --dataset=cifar100 --download --data_dir=/path/tfds
    python -m lrr_jax.data.prepare --dataset=imagenet2012 \\
        --manual_dir=/path/with/ILSVRC2012_img_train.tar+ILSVRC2012_img_val.tar \\
        --data_dir=/path/tfds

Afterwards `--config.dataset=cifar10 --config.data_dir=/path/tfds` reads it
without network access (and `tfds.data_source('cifar10', data_dir=...)` does too).

Path flags may start with `~` or hold `$VAR`s even after `=` (where the shell
leaves them alone): they are expanded here. `--download` first checks that the
download host answers (a few seconds) and otherwise fails with one line. A
prepared split whose size is not the real dataset's gets a warning. An error
is one line on stderr (`error: KEY: ...`) and exit status 2; library logging
is shown only with `--verbose`.
"""

import argparse
import logging
import os
import sys
import time

from lrr_jax import errors
from lrr_jax.data import paths

DATASETS = ("cifar10", "cifar100", "imagenet2012")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lrr_jax.data.prepare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--archive",
        default="",
        type=paths.expand,
        help="CIFAR: cifar-10-binary.tar.gz / cifar-100-binary.tar.gz to prepare from",
    )
    parser.add_argument(
        "--manual_dir",
        default="",
        type=paths.expand,
        help="imagenet2012: the folder holding ILSVRC2012_img_train.tar and "
        "ILSVRC2012_img_val.tar",
    )
    parser.add_argument(
        "--data_dir", default="", type=paths.expand, help="TFDS data dir ('' = TFDS default)"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="CIFAR: download the tarball with TFDS if --archive is not given",
    )
    parser.add_argument("--verbose", action="store_true", help="show library logging")
    return parser.parse_args(argv)


def _quiet() -> None:
    """Library logging below ERROR off (TFDS warns about folders it looks into)."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Prepares the dataset and prints the files written; returns the exit status.

    Args:
        argv: Command-line arguments without the program name (None = sys.argv[1:]).
    """
    args = _parse(argv)
    if not args.verbose:
        _quiet()
    # Imported here so `--help` answers without importing tensorflow_datasets.
    from lrr_jax.data import cifar, imagenet

    start = time.time()
    try:
        if args.dataset == "imagenet2012":
            if args.archive or args.download:
                raise errors.ConfigError("archive", "imagenet2012 is prepared from "
                                         "--manual_dir (it has no download or single archive)")
            b = imagenet.prepare(args.data_dir or None, args.manual_dir or None)
            sizes = imagenet.split_sizes(b)
            warning = None if sizes == imagenet.SPLIT_SIZES else (
                f"warning: imagenet2012 has {sizes['train']} train / {sizes['test']} validation "
                "examples, not ILSVRC2012's 1,281,167 / 50,000: a partial or generated set?")
        else:
            if args.manual_dir:
                raise errors.ConfigError("manual_dir", f"{args.dataset} is prepared from "
                                         "--archive or --download")
            b = cifar.prepare(args.dataset, args.data_dir or None, args.archive or None,
                              args.download)
            warning = cifar.size_warning(args.dataset, cifar.split_sizes(b))
    except errors.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.dataset} {b.version} is prepared in {b.data_dir} ({time.time() - start:.1f} s)")
    for split, info in sorted(b.info.splits.items()):
        print(f"  {split}: {info.num_examples} examples")
    if warning:
        print(warning, file=sys.stderr)
    for name in sorted(os.listdir(b.data_dir)):
        size = os.path.getsize(os.path.join(b.data_dir, name))
        print(f"  {name}  {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
