"""Benchmarks of the training engine: `python -m lrr_jax.bench` prints one JSON object.

The object is also written to `--out`. Every measurement records the settings
it ran with, the device kind, the load average before and after, the CPU time
this process got, every repeat and the median over repeats after warm-up (the
first call of each program compiles it and is not timed).

Parts (`--only=a,b,...`; default all):

* `throughput`: images/s of the compiled epoch (`train.make_train_epoch`:
  on-device shuffling, crop/flip, normalization, `steps` SGD steps in one
  `lax.scan`, donated state) for each model x dtype, masked and dense. Dense is
  the same epoch built with `masked=False`: the mask stays in the state but is
  not multiplied into the weights (nor into their gradients). The two are
  timed alternately in one process; `masked_over_dense` is the worst (largest)
  over model x dtype of the median of the paired time ratios.
* `vmap`: K replicas of the quickstart model (configs/quickstart.py) stacked
  in one vmapped epoch program versus K sequential calls of the same program
  built for 1 replica, the same epochs and data; `vmap_speedup` = sequential
  time / vmapped time, steady state (compilation excluded from both). Also
  recorded: the matmul GFLOP/s each reaches and `speedup_bound`, the best
  single-matmul GFLOP/s of the device over the sequential rate: no same-work
  batching can beat that ratio.
* `vmap_runs`: the same comparison as whole runs: K sequential campaigns
  (`programs.run_campaign`: the level loop) of the quickstart for one method with
  `num_replicas=1` (seeds 0..K-1, each run building and compiling its own
  programs, evaluating, pruning and checkpointing, as K separate runs would)
  against one campaign with `num_replicas=K`; `--vmap_runs_levels` levels of
  the quickstart's epochs. `vmap_runs_speedup` = sequential seconds / vmapped
  seconds (one repeat each).
* `methods`: the quickstart's methods x seeds (6 replicas) as three whole
  campaigns: one program for all (`replica_batch=0`), the same replicas one at a
  time through one compiled program (`replica_batch=1`), and one campaign per
  method (its seeds vmapped: how methods ran before they became replicas);
  `methods_one_program_speedup` = one-method-at-a-time seconds / one-program
  seconds (target >= 1: one program is not slower), also
  `replicas_one_program_speedup`. Then the mask-transfer figure
  (imp, wr, lrr, wr@lrr, lrr@imp x the seeds) as one program against its two
  stages run one after another (imp,wr,lrr; then WR and LRR with
  `mask_source` = stage 1's LRR and IMP runs): `figure_one_program_speedup` =
  two-stage seconds / one-program seconds (target >= 1). `--methods_levels`
  (default: the quickstart's 15). Compilation is included: each campaign
  compiles its own. `--campaign_epochs` shortens the levels of the
  `vmap_runs` and `methods` campaigns (the test's toy run).
* `prune`: `pruning.prune` (global magnitude, exact count) on random
  ResNet50/CIFAR100-size parameters (23.65M prunable weights) with a mask at
  density 0.8^4, pruned to 0.8^5; `prune_seconds` is the median.
* `quickstart`: the README quickstart command end to end in a subprocess
  (`python -m lrr_jax.main --config=configs/quickstart.py`), wall seconds.
* `torch`: the masked CIFAR ResNet18 epoch of lrr_jax (float32) against a
  plain PyTorch eager reference (`torch_ref.torch_epoch`: same architecture,
  width, batch, masked weights, crop/flip, SGD with momentum and weight
  decay), timed alternately; `torch_ratio` = lrr_jax time / PyTorch time
  (below 1: lrr_jax is faster). Needs `pip install lrr_jax[torch]`; recorded
  as skipped otherwise.

Defaults depend on the platform of `jax.devices()[0]` (recorded under
`settings`): on CPU width 0.25, 2 steps per timed epoch, 3 repeats, so the
whole run takes minutes; on GPU/TPU width 1.0 (the paper's networks), 50
steps, 5 repeats. The batch defaults to the paper's 256 (`config_base`).

Modules: `cli` (arguments, defaults, the JSON object), `parts` (one function
per part), `programs` (the compiled epochs on synthetic data and
`run_campaign`, the one call into the level loop), `timing`, `torch_ref` (the
PyTorch reference) and `render` (markdown, `--render=FILE`).
`scripts/gpu_check.py` builds the one-call GPU check from the same pieces.
"""
