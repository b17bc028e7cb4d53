"""The PyTorch reference of the benchmarks: the masked CIFAR ResNet18 epoch in plain eager PyTorch.

Needs `pip install 'lrr_jax[torch]'` (or any torch); nothing else in lrr_jax
imports torch. `status()` says whether torch imports and which device it would
use, without failing when it does not.
"""

from __future__ import annotations


def status() -> dict:
    """{'available': bool, 'torch', 'cuda', 'device', ...} or the reason torch is unusable."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken CUDA library
        return {"available": False, "reason": f"import torch failed: {type(e).__name__}: {e}"}
    try:
        cuda = bool(torch.cuda.is_available())
        info = {"available": True, "torch": torch.__version__, "cuda": cuda,
                "cuda_version": torch.version.cuda, "device": "cuda" if cuda else "cpu",
                "threads": torch.get_num_threads()}
        if cuda:
            info["device_name"] = torch.cuda.get_device_name(0)
        return info
    except Exception as e:  # noqa: BLE001 - a CUDA runtime that fails at its first query
        return {"available": False, "torch": torch.__version__,
                "reason": f"torch.cuda failed: {type(e).__name__}: {e}"}


def torch_epoch(width: float, batch: int, steps: int, num_classes: int, seed: int = 0, *,
                channels_last: bool = False, bf16: bool = False):
    """A plain PyTorch (eager, CPU or CUDA) masked CIFAR ResNet18 epoch of `steps` steps.

    The same network as `lrr_jax.models.resnet.resnet18` (3x3 stem, no pool,
    BasicBlocks 2-2-2-2, bias-free convolutions and classifier), masked
    weights (w * m in the forward pass, like lrr_jax), random crop (zero
    padding 4) and flip per image, normalization, cross entropy, SGD with
    momentum 0.9 and coupled weight decay 1e-4. `channels_last` keeps
    activations and weights NHWC in memory (the layout cuDNN's tensor-core
    kernels want); `bf16` runs forward and backward under
    `torch.autocast(dtype=torch.bfloat16)` with float32 parameters (as
    lrr_jax's `dtype='bfloat16'`). On CUDA, `cudnn.benchmark` picks each
    convolution's fastest algorithm (the first call pays for it).

    Returns (epoch, info): `epoch()` runs one epoch and returns the last loss.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    class MaskedConv(nn.Conv2d):
        def __init__(self, cin, cout, k, stride):
            super().__init__(cin, cout, k, stride, k // 2, bias=False)
            nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
            self.register_buffer("mask", torch.ones_like(self.weight))

        def forward(self, x):
            return F.conv2d(x, self.weight * self.mask, None, self.stride, self.padding)

    class Block(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1, self.bn1 = MaskedConv(cin, planes, 3, stride), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = MaskedConv(planes, planes, 3, 1), nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != planes:
                self.shortcut = nn.Sequential(MaskedConv(cin, planes, 1, stride),
                                              nn.BatchNorm2d(planes))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    def ch(c):
        return max(1, int(round(c * width)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = MaskedConv(3, ch(64), 3, 1), nn.BatchNorm2d(ch(64))
            layers, cin = [], ch(64)
            for stage in range(4):
                for index in range(2):
                    stride = 2 if stage > 0 and index == 0 else 1
                    layers.append(Block(cin, ch(64 * 2 ** stage), stride))
                    cin = ch(64 * 2 ** stage)
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, num_classes, bias=False)
            self.register_buffer("fc_mask", torch.ones_like(self.fc.weight))

        def forward(self, x):
            x = self.layers(F.relu(self.bn1(self.conv1(x))))
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return F.linear(x, self.fc.weight * self.fc_mask)

    net = ResNet18().to(device).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = steps * batch
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)
    labels = torch.randint(0, num_classes, (n,), generator=gen).to(device)
    mean = torch.full((1, 3, 1, 1), 0.5, device=device)
    std = torch.full((1, 3, 1, 1), 0.25, device=device)
    pad = 4
    rows = torch.arange(32, device=device)

    def crop_flip(x):
        b = x.shape[0]
        padded = F.pad(x, (pad, pad, pad, pad))
        off = torch.randint(0, 2 * pad + 1, (b, 2), device=device)
        flip = torch.rand(b, device=device) < 0.5
        cols = rows[None, :].expand(b, 32)
        cols = torch.where(flip[:, None], 31 - cols, cols)
        iy = (off[:, :1] + rows[None, :])[:, None, :, None]  # (b, 1, 32, 1)
        ix = (off[:, 1:] + cols)[:, None, None, :]  # (b, 1, 1, 32)
        bi = torch.arange(b, device=device)[:, None, None, None]
        ci = torch.arange(3, device=device)[None, :, None, None]
        return padded[bi, ci, iy, ix]

    def epoch():
        perm = torch.randperm(n, device=device)
        loss = None
        for s in range(steps):
            ids = perm[s * batch:(s + 1) * batch]
            x = (crop_flip(images[ids]).float() / 255.0 - mean) / std
            x = x.contiguous(memory_format=memory_format)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x), labels[ids])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    info = {"torch": torch.__version__, "device": device, "threads": torch.get_num_threads(),
            "channels_last": channels_last, "autocast_bfloat16": bf16}
    return epoch, info
