"""Iterative random pruning trained with IMP and with LRR (Section 3 of the paper).

    python -m lrr_jax.main --config=configs/random_masks.py:balanced --workdir=/tmp/random_balanced

The argument is ALLOCATION or ALLOCATION,BASE (BASE as in configs/transfer.py:
quickstart by default, cifar10_small, cifar10, cifar100). After each level the
mask keeps a uniformly random subset of the unpruned weights at the same
densities as magnitude pruning (0.8^k), allocated over layers by

- balanced: the same number of weights in every layer where possible (a
  layer smaller than its share stays dense; the rest go to the others);
- erk: Erdos-Renyi-Kernel, layer density proportional to (sum of dims) / (product of dims);
- uniform: the same density in every layer;
- global: one random ranking over all prunable weights (uniform in expectation).

IMP rewinds to theta_0 each level; LRR keeps its weights (pruned ones drop out)
and rewinds only the learning-rate schedule. Both methods run, in
<workdir>/imp and <workdir>/lrr. Expected (paper): LRR on random masks beats
IMP on the same kind of random masks, and balanced/ERK beat uniform/global at
high sparsity.
"""

from configs import transfer

ALLOCATIONS = ("balanced", "erk", "uniform", "global")


def get_config(arg: str = "balanced"):
    allocation, _, base = (arg or "balanced").partition(",")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown random mask allocation {allocation!r}; "
                         f"expected one of {ALLOCATIONS}")
    c = transfer.base_config(base)
    c.methods = "imp,lrr"
    c.random_mask = True  # random scores instead of |w|
    c.pruning = allocation
    return c
