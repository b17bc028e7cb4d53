"""Quickstart: IMP, WR and LRR on mnist1d with a 2x256 MLP, offline, on a laptop CPU.

    python -m lrr_jax.main --config=configs/quickstart.py --workdir=/tmp/quick

mnist1d (4,000 train / 1,000 test, generated locally by the `mnist1d` package)
is the embedded dataset where the three methods separate: on sklearn digits
they all stay at ~97%. 15 levels take the MLP from dense to density 0.044
(95.6% sparsity); 2 seeds per method run as 2 vmapped replicas. Expected
(see README for the measured table): at density ~0.044, LRR > WR > IMP.
"""

from lrr_jax import config_base


def get_config():
    c = config_base.get_base_config()
    c.methods = "imp,wr,lrr"
    c.dataset = "mnist1d"
    c.model = "mlp"
    c.levels = 15  # densities 1.0 ... 0.8**14 = 0.044
    c.epochs_per_level = 20
    c.warmup_epochs = 2  # WR rewinds to the end of these
    c.batch_size = 100  # 40 steps per epoch
    c.num_replicas = 2  # seeds 0 and 1, trained together
    c.checkpoint_every_epochs = 0  # levels take seconds: save only their ends
    return c
