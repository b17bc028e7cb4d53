"""LeNet-300-100 on MNIST: the lottery-ticket baseline (Frankle & Carbin 2019), IMP, WR and LRR.

    python -m lrr_jax.main --config=configs/mnist_lenet.py --workdir=$HOME/runs/lenet \
        --config.idx_dir=$HOME/mnist     # the four official idx .gz files
    # or --config.download=True (TFDS downloads MNIST into --config.data_dir)

The network is open_lth's `mnist_lenet_300_100` (784-300-100-10, ReLU, biases,
266,200 prunable weights) and the recipe open_lth's default for it
(facebookresearch/open_lth, `models/mnist_lenet.py`, `default_hparams`): SGD
with lr 0.1, no momentum, no weight decay, a constant learning rate, batch 128,
40 epochs per level, no augmentation, inputs normalized with MNIST's mean/std
(0.1307, 0.3081), global magnitude pruning of 20% of the remaining weights per
level. Frankle & Carbin's paper trained it with Adam (lr 1.2e-3, batch 60, 50K
iterations); lrr_jax has SGD only, so this follows open_lth's SGD recipe.

Where lrr_jax differs from open_lth:
- The output layer is pruned with the rest, by the same global ranking. open_lth's
  default leaves it dense (`pruning_layers_to_ignore='fc.weight'`), Frankle &
  Carbin prune it at half the rate (10%, layer-wise); lrr_jax has no key to
  exempt a layer or give it its own rate. Its Kaiming weights are larger (std
  sqrt(2/100) against sqrt(2/784) in the first layer), so global magnitude
  pruning removes relatively few of them.
- WR rewinds to the end of lrr_jax's warm-up, here 1 epoch at lr 0.1 (469 steps)
  before level 0, which every method trains; IMP rewinds to theta_0 as
  open_lth's lottery runs do (`rewinding_steps` 0). With a constant learning
  rate there is no schedule to rewind, so LRR here is continued training of the
  pruned network at lr 0.1 (fine-tuning); `--config.lr_min=0.001` gives every
  level a cosine decay, the setting of Gadhikar & Burkholz where LRR's restart matters.

Expected: the dense network reaches ~98% test accuracy; IMP's tickets stay
within a few tenths of a percent of it down to a few percent of the weights
(Frankle & Carbin 2019, Figures 3 and 4). 18 levels reach density 0.8^17 = 2.3%.
"""

from lrr_jax import config_base


def get_config():
    c = config_base.get_base_config()
    c.methods = "imp,wr,lrr"
    c.dataset = "mnist"
    c.model = "lenet_300_100"
    c.levels = 18  # densities 1.0 ... 0.8**17 = 0.023
    c.epochs_per_level = 40
    c.warmup_epochs = 1  # one epoch at lr 0.1 (the 1-epoch ramp is constant); WR rewinds here
    c.batch_size = 128
    c.lr_min = 0.1  # constant learning rate, as open_lth
    c.momentum = 0.0
    c.weight_decay = 0.0
    return c
