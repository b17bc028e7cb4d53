"""Linear mode connectivity and sign agreement between two checkpoints.

    python -m lrr_jax.main --config=configs/lmc.py --workdir=/tmp/lmc_lrr_imp \
        --config.lmc_a=/tmp/quick/lrr:10 --config.lmc_b=/tmp/quick/imp:10

A checkpoint is RUN_DIR:LEVEL (that level's final weights), RUN_DIR:init
(theta_0) or RUN_DIR:rewind (after warm-up); replica 0 is used. Writes
<workdir>/lmc.json: test loss/accuracy at theta(alpha) = (1 - alpha) a +
alpha b for alpha = 0, 0.1, ..., 1 (weights masked by their own masks; BN
running stats interpolated too), the loss barrier, and the fraction of weights
unpruned in both whose signs differ between a and b, per layer and in total.
`python -m lrr_jax.report` draws lmc.png from it.

The optional argument BASE gives the data and model of the two runs
(quickstart, the default; cifar10_small; cifar10; ...). Expected: consecutive
LRR levels (k-1 -> k) are linearly connected (no barrier); LRR vs IMP at the
same level, and IMP's level k vs its theta_0, are separated by a barrier.
"""

from configs import transfer


def get_config(arg: str = ""):
    c = transfer.base_config(arg)
    c.experiment = "lmc"
    c.methods = ""
    c.lmc_a = ""  # RUN_DIR:LEVEL, required
    c.lmc_b = ""  # RUN_DIR:LEVEL, required
    c.lmc_points = 11
    return c
