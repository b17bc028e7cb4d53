"""A run is a list of replicas; a replica is the unit the level loop prunes, rewinds and trains.

A replica is (method, seed, perturbation probability) with its own params,
batch_stats, mask, optimizer state and rewind point (stacked on a leading
axis of one `TrainState`). `methods x perturb_probs x num_replicas` seeds of
a config are its replicas, all trained together: the train program is the
same for every method (they differ only in the host-side rewind between
levels), so `methods=imp,wr,lrr` with `num_replicas=2` is 6 replicas in one
compiled program.

Outputs stay per method: the replicas of method m are written to
`<workdir>/<m>/` (or `<workdir>` for a single method) with their index
within that method (`Replica.index`), as separate runs of one method would.

Data order (`config.data_order`):
- 'per_replica' (default): the batches and augmentation of a replica are
  keyed by its own seed (never its method): replica r of a K-replica run
  computes what a 1-replica run with its seed computes, and IMP, WR and LRR of
  one seed share their warm-up and level 0 exactly (paired comparisons).
  Cost: K gathered and augmented batches per step instead of one.
- 'shared': every replica sees the batches keyed by `config.seed` (the
  behaviour before data_order existed): one batch per step for all
  replicas; seeds then differ only in their initialization, so error bands
  over seeds come out narrower than separate runs give.

`config.replica_batch` (0 = all) trains the replicas in groups of that size,
one group after another with the same compiled program, for devices where K
vmapped replicas are slower than K times one. It does not change results
beyond float summation order.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

DATA_ORDERS = ("per_replica", "shared")
# A method entry `TARGET@SOURCE` (e.g. 'lrr@imp'): method TARGET trained on the masks of
# this run's SOURCE replica of the same seed and perturbation.
MASK_FROM = "@"


def parse_list(value, cast=str) -> list:
    """'a,b' or ('a', 'b') -> [cast(a), cast(b)]."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = list(value)
    return [cast(v) for v in items]


def methods_of(config) -> list[str]:
    """The run's method entries: `config.methods`, or `config.method` alone."""
    return parse_list(config.methods) if config.methods else [config.method]


def replica_settings(config) -> list[tuple[int, float]]:
    """(seed, perturb_prob) of each replica of a method: every probability x num_replicas seeds."""
    probs = parse_list(config.perturb_probs, float)
    return [(int(config.seed) + s, p) for p in probs for s in range(int(config.num_replicas))]


def split_entry(entry: str) -> tuple[str, str | None]:
    """'lrr@imp' -> ('lrr', 'imp'); 'lrr' -> ('lrr', None)."""
    target, at, source = entry.partition(MASK_FROM)
    return (target, source) if at else (entry, None)


@dataclasses.dataclass(frozen=True)
class Replica:
    """One model of the run: what it is (method entry, seed, p) and where its outputs go.

    `method` is the run's method entry and names its run directory: 'lrr', or
    'lrr@imp' for LRR on the masks of this run's IMP replica of the same seed
    and perturbation (`rewind` 'lrr', `mask_from` 'imp').
    """

    method: str
    seed: int
    perturb_prob: float
    index: int  # its position among the replicas of its method (results.csv `replica`)

    @property
    def rewind(self) -> str:
        """The method that decides where each level starts (`rewind.MODES`)."""
        return split_entry(self.method)[0]

    @property
    def mask_from(self) -> str | None:
        """The method entry whose replica gives this one its masks, or None."""
        return split_entry(self.method)[1]

    @property
    def name(self) -> str:
        return f"{self.method} replica {self.index} (seed {self.seed}, p={self.perturb_prob:g})"


def from_config(config) -> list[Replica]:
    """Every replica of `config`: methods x perturbation probabilities x seeds, in that order."""
    out = []
    for method in methods_of(config):
        for i, (seed, prob) in enumerate(replica_settings(config)):
            out.append(Replica(method, seed, prob, i))
    return out


def mask_sources(reps) -> np.ndarray:
    """For each position, the position of the replica it takes its masks from (itself
    unless its method entry is TARGET@SOURCE: the SOURCE replica of the same seed and p)."""
    where = {(r.method, r.seed, float(r.perturb_prob)): i for i, r in enumerate(reps)}
    return np.asarray([i if r.mask_from is None else
                       where[(r.mask_from, r.seed, float(r.perturb_prob))]
                       for i, r in enumerate(reps)], np.int64)


def groups(count: int, replica_batch: int) -> list[list[int]]:
    """Positions 0..count-1 cut into consecutive groups of `replica_batch` (0: one group)."""
    size = count if int(replica_batch) <= 0 else int(replica_batch)
    return [list(range(i, min(i + size, count))) for i in range(0, count, size)]


def data_seed(config, replica: Replica) -> int:
    """The seed that keys a replica's batches and augmentation."""
    return replica.seed if config.data_order == "per_replica" else int(config.seed)


def epoch_key(seed: int, level: int, epoch: int) -> jax.Array:
    """Key of one epoch's data order; level -1 is the warm-up."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(int(seed)), level + 1), epoch)


def by_method(reps) -> dict[str, list[int]]:
    """method -> positions of its replicas in `reps`."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(reps):
        out.setdefault(r.method, []).append(i)
    return out


def twins(reps) -> np.ndarray:
    """For each position, the first position with the same seed and perturbation.

    The warm-up and level 0 do not depend on the method (the methods differ
    only in the rewind between levels), so IMP, WR and LRR of one seed compute
    the same thing there; the loop keeps one copy per seed (`levels.share`) so
    the paired comparison holds bitwise on every backend. Computing it at two
    positions of a vmapped program is not enough: XLA:CPU sums the 9th replica
    of a ResNet step in another order than the first 8, and a BatchNorm net
    amplifies a last-bit difference to ~1e-2 in 4 steps.
    """
    first: dict = {}
    return np.asarray([first.setdefault((r.seed, float(r.perturb_prob)), i)
                       for i, r in enumerate(reps)], np.int64)


# Pytrees stacked on the replica axis (host arrays).
def one(tree, i: int):
    """Replica `i` of a stacked pytree."""
    return jax.tree.map(lambda a: np.asarray(a)[i], tree)


def take(tree, positions):
    """The replicas at `positions` of a stacked pytree, still stacked."""
    idx = np.asarray(positions, np.int64)
    return jax.tree.map(lambda a: np.asarray(a)[idx], tree)


def stack(trees):
    """One-replica pytrees -> a stacked pytree."""
    return jax.tree.map(lambda *a: np.stack(a), *trees)


def concat(trees):
    """Stacked pytrees -> one stacked pytree, in order."""
    return jax.tree.map(lambda *a: np.concatenate(a), *trees)


def place(state, part, positions):
    """`state` with the replicas at `positions` replaced by the stacked `part`."""
    idx = np.asarray(positions, np.int64)
    if not len(idx):
        return state

    def put(a, b):
        a = np.array(a)
        a[idx] = b
        return a

    return jax.tree.map(put, state, part)
