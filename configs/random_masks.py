"""Iterative random pruning trained with IMP and with LRR (Section 3 of the paper).

    python -m lrr_jax.main --config=configs/random_masks.py:balanced --workdir=/tmp/random_balanced

The argument is ALLOCATION or ALLOCATION,BASE (BASE as in configs/transfer.py:
quickstart by default, cifar10_small, cifar10, cifar100). After each level the
mask keeps a uniformly random subset of the unpruned weights at the target
densities of magnitude pruning (0.8^k), allocated over layers by

- balanced (the authors' `prune_random_balanced`): X = d*N/L weights in each
  of the L layers; a layer smaller than X stays dense and its excess is NOT
  handed to the others, so the measured density is below d at low sparsity
  (ResNet18/CIFAR10 at d = 0.8: 0.369);
- erk (the authors' `prune_random_erk`): Erdos-Renyi-Kernel, layer density
  clamp(C * (sum of dims) / (product of dims), 0, 1) with C = d*N / sum of
  (sum of dims); capped layers' excess is lost too (ResNet18 at 0.8: 0.569);
- balanced_exact, erk_exact: the same shares, but capped layers hand their
  excess on so the density is exactly d;
- uniform: the same density in every layer;
- global: one random ranking over all prunable weights (uniform in expectation).

Every level draws fresh random scores within the previous mask (the masks are
nested), as the authors' |mask * randn| scores do. results.csv's `density`
column is the measured one.

IMP rewinds to theta_0 each level; LRR keeps its weights (pruned ones drop out)
and rewinds only the learning-rate schedule. Both methods run, in
<workdir>/imp and <workdir>/lrr. Expected (paper): LRR on random masks beats
IMP on the same kind of random masks, and balanced/ERK beat uniform/global at
high sparsity.
"""

from configs import transfer

ALLOCATIONS = ("balanced", "erk", "balanced_exact", "erk_exact", "uniform", "global")


def get_config(arg: str = "balanced"):
    allocation, _, base = (arg or "balanced").partition(",")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown random mask allocation {allocation!r}; "
                         f"expected one of {ALLOCATIONS}")
    c = transfer.base_config(base)
    c.methods = "imp,lrr"
    c.score = "random"  # random scores instead of |w|
    c.pruning = allocation
    return c
