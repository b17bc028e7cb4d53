"""The data-parallel step on 8 fake CPU devices matches 1 device, for pmap and shard_map.

With sharded training data the two backends agree with each other.
"""

import json
import os
import subprocess
import sys

import numpy as np
import xla_env

HERE = os.path.dirname(__file__)
# Devices sum gradients and BN statistics in a different order than one device
# does, so trajectories agree to float32 reassociation, not bitwise.
RTOL = 1e-5


def test_one_vs_eight_devices_both_backends():
    env = dict(os.environ, XLA_FLAGS=xla_env.flags(8),
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, os.path.join(HERE, "dp_worker.py"), "8"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    # Sharded training data (shard_train_data): another data order, so its own
    # reference (that it learns is checked by test_multihost's campaign); both
    # backends give the same run.
    sharded = np.array(runs.pop("pmap_8_sharded"))
    np.testing.assert_allclose(runs.pop("shard_map_8_sharded"), sharded, rtol=RTOL)
    assert not np.allclose(sharded, runs["pmap_8"], rtol=1e-3)  # the shards were used
    reference = np.array(runs["pmap_1"])
    assert reference.shape == (6,)  # 3 epochs x 2 replicas
    assert reference[-2:].mean() < reference[:2].mean()  # it trains
    for name, losses in runs.items():
        np.testing.assert_allclose(losses, reference, rtol=RTOL, err_msg=name)
