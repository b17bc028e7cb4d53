"""Entry point: `python -m lrr_jax.main --config=configs/quickstart.py --workdir=/tmp/run`.

Any config field can be overridden, e.g. `--config.method=wr --config.levels=5`.
Bad input prints one line naming the key or file at fault and exits with
status 2, before anything is compiled; `--verbosity=1` adds the traceback.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lrr_jax import driver
from lrr_jax.errors import ConfigError

FLAGS = flags.DEFINE_string("workdir", None, "Directory for checkpoints, results and logs.")
CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file.", lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.value:
        _fail("workdir", "--workdir is required")
    verbose = flags.FLAGS["verbosity"].present
    if not verbose:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    try:
        driver.run(CONFIG.value, FLAGS.value)
    except (ConfigError, driver.TrainingDiverged) as e:
        if verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _fail(key, message):
    print(f"error: {key}: {message}", file=sys.stderr)
    sys.exit(2)


def run():
    flags.mark_flag_as_required("config")
    app.run(main)


if __name__ == "__main__":
    run()
