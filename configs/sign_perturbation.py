"""Sign perturbation during training (Section 4 of the paper): K replicas in one program.

    python -m lrr_jax.main --config=configs/sign_perturbation.py --workdir=/tmp/perturb

Before every `perturb_every`-th epoch of a level (epochs e with
e % perturb_every == perturb_every - 1, as the paper code: 30 of 150 epochs
there, 4 of 20 here, so 5 perturbations per level in both), each unpruned
weight's sign flips independently with probability p. p in {0, 0.1, 0.2,
0.3, 0.5} x 2 seeds are 10 model replicas stacked on a leading axis and
vmapped through one compiled train step, sharing every batch; the p = 0
replicas are the unperturbed runs of the same seeds. Each method (IMP, LRR)
is one such program; results.csv has a seed and a perturb_prob column per
replica, and the table printed at the end (<workdir>/summary.txt) has one
column per (method, p).

The optional argument BASE takes the settings of another config (quickstart,
the default; cifar10_small; cifar10, where perturb_every is set back to the
paper's 30). Expected (paper): perturbation costs LRR little at low sparsity
and more at high sparsity; IMP, which rewinds to the initial signs every level,
does not recover the flipped signs' information at all.
"""

from configs import transfer


def get_config(arg: str = ""):
    c = transfer.base_config(arg)
    c.methods = "imp,lrr"
    c.perturb_probs = "0,0.1,0.2,0.3,0.5"
    c.num_replicas = 2  # seeds seed, seed+1 for every p: 10 replicas
    # 5 perturbations per level, the last before the level's final epoch, as 30 of 150.
    c.perturb_every = max(1, c.epochs_per_level // 5)
    return c
