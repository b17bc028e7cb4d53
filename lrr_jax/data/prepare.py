"""Prepares CIFAR-10/100 as TFDS ArrayRecord, offline from the official binary tarball.

Usage:
    python -m lrr_jax.data.prepare --dataset=cifar10 \\
        --archive=/path/cifar-10-binary.tar.gz --data_dir=/path/tfds
    python -m lrr_jax.data.prepare --dataset=cifar100 --download --data_dir=/path/tfds

Afterwards `--config.dataset=cifar10 --config.data_dir=/path/tfds` reads it
without network access (and `tfds.data_source('cifar10', data_dir=...)` does too).

Path flags may start with `~` or hold `$VAR`s even after `=` (where the shell
leaves them alone): they are expanded here. `--download` first checks that the
download host answers (a few seconds) and otherwise fails with one line. A
prepared split whose size is not CIFAR's 50,000 / 10,000 gets a warning.
"""

import argparse
import os
import sys
import time

from lrr_jax import errors
from lrr_jax.data import paths


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lrr_jax.data.prepare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", required=True, choices=("cifar10", "cifar100"))
    parser.add_argument(
        "--archive",
        default="",
        type=paths.expand,
        help="cifar-10-binary.tar.gz / cifar-100-binary.tar.gz to prepare from",
    )
    parser.add_argument(
        "--data_dir", default="", type=paths.expand, help="TFDS data dir ('' = TFDS default)"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the tarball with TFDS if --archive is not given",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Prepares the dataset and prints the files written; returns the exit status.

    Args:
        argv: Command-line arguments without the program name (None = sys.argv[1:]).
    """
    args = _parse(argv)
    # Imported here so `--help` answers without importing tensorflow_datasets.
    from lrr_jax.data import cifar

    start = time.time()
    try:
        b = cifar.prepare(args.dataset, args.data_dir or None, args.archive or None, args.download)
    except errors.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.dataset} {b.version} is prepared in {b.data_dir} ({time.time() - start:.1f} s)")
    for split, info in sorted(b.info.splits.items()):
        print(f"  {split}: {info.num_examples} examples")
    warning = cifar.size_warning(args.dataset, cifar.split_sizes(b))
    if warning:
        print(warning, file=sys.stderr)
    for name in sorted(os.listdir(b.data_dir)):
        size = os.path.getsize(os.path.join(b.data_dir, name))
        print(f"  {name}  {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
