"""Run the level loop in-process under several backends / device counts (one JAX start).

Started by tests/test_reliability.py in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX starts:

    python tests/reliability_worker.py WORKDIR NAME=PARALLEL:DEVICES ...

Each NAME runs configs/quickstart.py (tiny overrides) with that backend and
device count in WORKDIR/NAME; the test compares their results.csv files. A
run that raises leaves WORKDIR/NAME.error (its exception) and the others go on.
"""

import os
import sys

from lrr_jax import campaign

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "configs"))

import quickstart  # noqa: E402


def tiny_config(parallel: str, devices: int):
    c = quickstart.get_config()
    c.methods, c.method = "", "lrr"
    c.levels, c.epochs_per_level, c.warmup_epochs = 3, 2, 1
    c.batch_size = 80  # divisible by 1 and 8 devices
    c.num_replicas = 1
    c.progress, c.tensorboard = False, False
    c.parallel, c.num_devices = parallel, devices
    return c


if __name__ == "__main__":
    root = sys.argv[1]
    for spec in sys.argv[2:]:
        name, _, rest = spec.partition("=")
        parallel, devices = rest.split(":")
        try:
            campaign.run(tiny_config(parallel, int(devices)), os.path.join(root, name))
        except Exception as e:  # noqa: BLE001 - recorded for the test to report
            with open(os.path.join(root, f"{name}.error"), "w") as f:
                f.write(f"{type(e).__name__}: {e}")
