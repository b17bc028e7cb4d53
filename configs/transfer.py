"""Mask and sign transfers between runs (Sections 3-4 of the paper), one variant per argument.

    # 1. the source runs: IMP, WR and LRR on mnist1d (configs/quickstart.py)
    python -m lrr_jax.main --config=configs/quickstart.py --workdir=/tmp/quick
    # 2. a transfer run that reads them
    python -m lrr_jax.main --config=configs/transfer.py:wr_lrr_mask --workdir=/tmp/wr_lrr_mask \
        --config.mask_source=/tmp/quick/lrr

The argument is VARIANT or VARIANT,BASE; BASE names the config the settings
come from (quickstart, the default; cifar10_small; cifar10; cifar100), so the
same variant runs at paper scale: `--config=configs/transfer.py:wr_lrr_mask,cifar10`.
Sources are run directories of one method (e.g. <workdir>/lrr of a
multi-method run) with the same model, data, prune_fraction, replicas and at
least as many levels; anything else stops with a ConfigError before training.
Each replica takes the source replica with its index (same seeds: same theta_0).

Variants (method; sources to pass; what level k >= 1 trains):
- wr_lrr_mask: WR; mask_source = an LRR run; WR on LRR's level-k mask (mask quality).
- imp_lrr_mask: IMP; mask_source = an LRR run; IMP on LRR's level-k mask.
- lrr_imp_mask: LRR; mask_source = an IMP run; "flexible LRR", LRR on IMP's masks.
- imp_lrr_signs: IMP; mask_source and sign_source = an LRR run; after the rewind,
  w <- |theta_0| * sign(LRR's level-k final weights), on LRR's mask, as the paper
  code (`--config.sign_source_level=previous`: the weights LRR starts level k with).
- imp_lrr_signs_shuffled: as imp_lrr_signs, with |theta_0| permuted over all of each
  layer's entries, pruned ones included, so the unpruned weights get magnitudes drawn
  from the whole layer (the paper code's `reset_shuffled_amplitude`, imp-lrr-lts
  main.py:1313-1316).
- imp_lrr_signs_shuffled_in_mask: the same, permuted within each layer's unpruned
  entries only (they keep their own set of init magnitudes).
- imp_own_signs: IMP; no source; w <- |theta_0| * sign(its own level k-1 trained
  weights), on its own mask.
- lrr_init_signs: LRR; no source; LRR's kept weights with their signs forced back
  to the rewind point's (the end of the warm-up; theta_0 without one), and the
  rewind point's optimizer state, as the paper code (`--config.init_signs_from=theta0`:
  sign(theta_0), the momentum kept).

Expected (paper; measured small-scale numbers in README.md ("Reproducing the paper")):
WR + LRR mask > WR; LRR + IMP mask > IMP; IMP + LRR signs closes most of the
gap between IMP and LRR; LRR + init signs loses LRR's advantage.
"""

VARIANTS = {
    # variant: (method, needs mask source of, needs sign source of, sign_transfer)
    "wr_lrr_mask": ("wr", "lrr", "", ""),
    "imp_lrr_mask": ("imp", "lrr", "", ""),
    "lrr_imp_mask": ("lrr", "imp", "", ""),
    "imp_lrr_signs": ("imp", "lrr", "lrr", "source_signs"),
    "imp_lrr_signs_shuffled": ("imp", "lrr", "lrr", "shuffled_all_init_magnitudes"),
    "imp_lrr_signs_shuffled_in_mask": ("imp", "lrr", "lrr", "shuffled_init_magnitudes"),
    "imp_own_signs": ("imp", "", "", "own_signs"),
    "lrr_init_signs": ("lrr", "", "", "init_signs"),
}


# The configs the settings usually come from (any configs/<name>.py of a pruning run works).
BASES = ("quickstart", "cifar10_small", "cifar10", "cifar100", "tiny_imagenet")


def base_config(name: str):
    """The settings of configs/<name>.py (quickstart, cifar10_small, cifar10, cifar100, ...)."""
    import importlib

    try:
        module = importlib.import_module(f"configs.{name or 'quickstart'}")
    except ModuleNotFoundError:
        raise ValueError(f"no config configs/{name}.py to take the settings from; expected "
                         f"one of {', '.join(BASES)}") from None
    return module.get_config()


def placeholder(key: str, method: str) -> str:
    """A source value that stops the run with a ConfigError naming what to pass."""
    return f"<set --config.{key} to the run directory of a {method.upper()} run>"


def get_config(arg: str = "wr_lrr_mask"):
    variant, _, base = (arg or "wr_lrr_mask").partition(",")
    if variant not in VARIANTS:
        raise ValueError(f"unknown transfer variant {variant!r}; expected one of {list(VARIANTS)}")
    method, mask_of, sign_of, transfer = VARIANTS[variant]
    c = base_config(base)
    c.methods = ""
    c.method = method
    c.mask_source = placeholder("mask_source", mask_of) if mask_of else ""
    c.sign_source = placeholder("sign_source", sign_of) if sign_of else ""
    c.sign_transfer = transfer
    return c
