"""ImageNet (ILSVRC2012), ResNet-50 with the ImageNet stem: the paper code's ImageNet recipe.

    python -m lrr_jax.data.prepare --dataset=imagenet2012 --manual_dir=$HOME/ilsvrc \\
        --data_dir=$HOME/tfds          # once: the two official tars -> ArrayRecord
    python -m lrr_jax.main --config=configs/imagenet.py --workdir=$HOME/runs/in_lrr \\
        --config.data_dir=$HOME/tfds

The training set (1.28M JPEGs, ~140 GB) is streamed: each host reads its
share of every batch from the prepared records, decodes and crops it on its
CPU cores, and feeds its devices (`input_pipeline='stream'`, lrr_jax/data/stream.py).
A campaign is a job for a TPU pod slice or a multi-GPU host (docs/IMAGENET.md).

Where each value comes from (imp-lrr-lts, the authors' code):
- model: ResNet-50 with the ImageNet stem, 1000 classes (`--arch ResNet50`,
  `models/resnet.py`), every conv and the classifier pruned, as their ConvMask layers.
- data: `data/imagenet.py` (`ImageNet`, `FFCVImageNet`): RandomResizedCrop(224) +
  flip for training, Resize(256) + CenterCrop(224) (the FFCV decoder's 224/256
  centre crop) for evaluation, ImageNet mean/std; the validation split is the test set.
- batch 256, lr 0.1, momentum 0.9 (no Nesterov), weight decay 1e-4, no label
  smoothing: the defaults of `args.py` (`--batch-size`, `--lr`, `--momentum`,
  `--wd`, `--label-smoothing None`).
- 90 epochs per level (`--epochs 90`), the schedule `imagenet-step-warmup`
  (`utils/schedulers.py` `imagenet_lr_drops_warmup`: 0.1*lr for epochs 0-9, lr
  to 39, 0.1*lr to 69, then 0.01*lr), restarted at every level (LRR's rewind is
  `step = 0`, as for CIFAR).
- the warm-up before level 0: 10 epochs (`--warmup-epochs 10`) at 0.1*lr
  (`warmup_lr` holds 0.1*lr for `--set imagenet`); WR rewinds to its end.
- 20% global magnitude pruning per level, 20 levels (~98.6% sparsity at level 19).

TurboPrune (the same group's later, tuned re-implementation) differs: batch 512,
lr 0.2 with a triangular schedule, bfloat16, 90 epochs per level; set those keys
to follow it. Expected (Renda et al. 2020, ResNet-50, 90 epochs per level): dense
~76% top-1; LRR keeps it to ~80% sparsity and stays above WR and fine-tuning beyond.
"""

from configs import cifar10


def get_config():
    c = cifar10.get_config()
    c.dataset = "imagenet2012"
    c.input_pipeline = "stream"
    c.model = "resnet50_imagenet"
    c.levels = 20
    c.epochs_per_level = 90
    c.lr_schedule = "imagenet_step_warmup"
    c.checkpoint_every_epochs = 1  # an epoch is minutes on a pod slice; a SIGTERM saves sooner
    c.eval_every_epochs = 5  # 50,000 validation images per evaluation
    return c
