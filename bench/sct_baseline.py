#!/usr/bin/env python3
"""A PyTorch twin of SCT's released code (src/SCT/models: fer_model, fc/fl/fs_model, fu_model,
sct.py, losses.py), written out without its configuration and training framework, with its
parameter names, for the tests of `models/sct.h` and `train/sct_task.h` (docs/sct-plan.md).
The region upsampling is the release's: affine_grid and grid_sample (align_corners = False)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mucon_baseline import WaveNetLayer


class WaveNetBlock(nn.Module):
    def __init__(self, in_channels, hidden, layers, pool_after, z_after):
        super().__init__()
        self.first_conv = nn.Conv1d(in_channels, hidden, 1)
        self.last_conv = nn.Conv1d(hidden, hidden, 1)
        self.layers = []
        self.pool_after, self.z_after = pool_after, z_after
        for i in range(layers):
            layer = WaveNetLayer(hidden, 2 ** i, 0.25)
            self.layers.append(layer)
            self.add_module("l_{}".format(i), layer)

    def forward(self, x):
        x = F.relu(self.first_conv(x))
        z = None
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.pool_after:
                x = F.max_pool1d(x, kernel_size=2)
            if i == self.z_after:
                z = x
        return z, self.last_conv(F.relu(x))


class Fer(nn.Module):
    def __init__(self, in_channels, hidden, layers, pool_after, z_after):
        super().__init__()
        self.WaveNet = WaveNetBlock(in_channels, hidden, layers, pool_after, z_after)
        self.group_norm = nn.GroupNorm(32, hidden)


class Head(nn.Module):
    pass


class Sct(nn.Module):
    def __init__(self, in_dim, classes, hidden=128, layers=11, pool_after=(1, 2, 4, 8, 10), z_after=4):
        super().__init__()
        self.fer = Fer(in_dim, hidden, layers, pool_after, z_after)
        self.fs, self.fc, self.fl = Head(), Head(), Head()
        self.fs.classifier = nn.Conv1d(hidden, classes, 1)
        self.fc.classifier = nn.Conv1d(hidden, classes, 1)
        self.fl.conv1 = nn.Conv1d(hidden, hidden // 2, 1)
        self.fl.conv2 = nn.Conv1d(hidden // 2, 1, 1)

    def forward(self, x):  # 1 x D x T
        frames = x.shape[2]
        z, last = self.fer.WaveNet(x)
        regions = self.fer.group_norm(last)
        s = F.interpolate(self.fs.classifier(z), frames)[0]
        a = F.softmax(self.fc.classifier(regions) / 0.1, dim=1)[0]
        l = self.fl.conv2(self.fl.conv1(regions)).view(-1)
        return a, l, s, upsample(a, l, frames)


def upsample(a, l, frames, J=100):
    """TemporalSamplingUpSampler of the release (fu_model.py)."""
    k, c = a.shape[1], a.shape[0]
    A = a.permute(1, 0)
    L = frames * F.softmax(l, dim=0)
    H = int(L.max().item() + 0.5)
    s = H / L
    x = (L / 2 - H / 2) / (-(L / 2))
    zeros = torch.zeros_like(s)
    theta = torch.stack([torch.stack([s, zeros, x], 1), torch.stack([zeros, s, zeros], 1)], 1)
    grid = F.affine_grid(theta, torch.Size((k, c, 1, H)), align_corners=False)
    src = A.view(k, c, 1, 1).expand(k, c, 1, J)
    out = F.grid_sample(src, grid, mode="bilinear", align_corners=False).view(k, c, H)
    crops = [out[i][:, 0:round(L[i].item())] for i in range(k)]
    return F.interpolate(torch.cat(crops, 1).unsqueeze(0), size=frames)[0]


def losses(a, l, s, y, action_set, class_weight, delta=1.0, variant="release"):
    """losses.py of the release: set, region, inverse sparsity (L1), temporal consistency, SCT, length;
    variant="thesis": eq. 8.5-8.14 as the text writes them (no class weights)."""
    idx = torch.tensor(action_set)
    if variant == "thesis":
        class_weight = [1.0] * a.shape[0]
    w = torch.tensor(class_weight, dtype=torch.float32)[idx]
    as_ = a[idx]  # M x K
    set_loss = F.binary_cross_entropy(as_.max(1)[0], torch.ones(len(action_set)), weight=w)
    region = F.binary_cross_entropy(as_.max(0)[0], torch.ones(as_.shape[1]))
    sparsity = (w * (1 - as_.mean(1)).abs()).mean()
    padded = F.pad(as_.unsqueeze(0), (1, 1), mode="replicate")[0]
    consistency = (padded[:, 1:] - padded[:, :-1]).abs().sum()
    v = (y[idx] @ s.t()) / y.shape[1]
    sct = F.cross_entropy(v, idx, weight=torch.tensor(class_weight, dtype=torch.float32))
    length = (F.relu(l - delta) + F.relu(-delta - l)).sum()
    if variant == "thesis":
        present = torch.zeros(a.shape[0])
        present[idx] = 1
        set_loss = F.binary_cross_entropy(a.max(1)[0], present)
        consistency = consistency / (len(action_set) * as_.shape[1])
        length = length / as_.shape[1]
    return {"set": set_loss, "region": region, "sparsity": sparsity, "consistency": consistency,
            "transformer": sct, "length": length}
