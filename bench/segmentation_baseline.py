#!/usr/bin/env python3
"""The PyTorch side of `holo bench segmentation` (docs/benchmarks.md): MS-TCN as its release
defines it (model.py) and its training step (cross entropy of every stage plus 0.15 x the
truncated MSE smoothing loss, Adam), on the same random features and labels Holo times.
Prints JSON: steps per second and the first step's loss."""
import argparse
import copy
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class DilatedResidualLayer(nn.Module):
    def __init__(self, dilation, in_channels, out_channels):
        super().__init__()
        self.conv_dilated = nn.Conv1d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.conv_1x1 = nn.Conv1d(out_channels, out_channels, 1)
        self.dropout = nn.Dropout()

    def forward(self, x, mask):
        out = F.relu(self.conv_dilated(x))
        out = self.conv_1x1(out)
        out = self.dropout(out)
        return (x + out) * mask[:, 0:1, :]


class SingleStageModel(nn.Module):
    def __init__(self, num_layers, num_f_maps, dim, num_classes):
        super().__init__()
        self.conv_1x1 = nn.Conv1d(dim, num_f_maps, 1)
        self.layers = nn.ModuleList([copy.deepcopy(DilatedResidualLayer(2 ** i, num_f_maps, num_f_maps))
                                     for i in range(num_layers)])
        self.conv_out = nn.Conv1d(num_f_maps, num_classes, 1)

    def forward(self, x, mask):
        out = self.conv_1x1(x)
        for layer in self.layers:
            out = layer(out, mask)
        return self.conv_out(out) * mask[:, 0:1, :]


class MultiStageModel(nn.Module):
    def __init__(self, num_stages, num_layers, num_f_maps, dim, num_classes):
        super().__init__()
        self.stage1 = SingleStageModel(num_layers, num_f_maps, dim, num_classes)
        self.stages = nn.ModuleList([copy.deepcopy(SingleStageModel(num_layers, num_f_maps, num_classes, num_classes))
                                     for s in range(num_stages - 1)])

    def forward(self, x, mask):
        out = self.stage1(x, mask)
        outputs = out.unsqueeze(0)
        for s in self.stages:
            out = s(F.softmax(out, dim=1) * mask[:, 0:1, :], mask)
            outputs = torch.cat((outputs, out.unsqueeze(0)), dim=0)
        return outputs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--features", required=True)  # D x T float32 .npy
    p.add_argument("--labels", required=True)    # 1 x T float32 .npy (class ids)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(np.load(a.features)).unsqueeze(0)
    y = torch.from_numpy(np.load(a.labels)[0]).long().unsqueeze(0)
    mask = torch.ones(1, a.classes, x.shape[2])
    model = MultiStageModel(a.stages, a.layers, a.channels, x.shape[1], a.classes)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.0005)
    ce = nn.CrossEntropyLoss(ignore_index=-100)
    mse = nn.MSELoss(reduction='none')

    def step():
        opt.zero_grad()
        preds = model(x, mask)
        loss = 0
        for p_ in preds:
            loss += ce(p_.transpose(2, 1).contiguous().view(-1, a.classes), y.view(-1))
            loss += 0.15 * torch.mean(torch.clamp(mse(F.log_softmax(p_[:, :, 1:], dim=1),
                                                      F.log_softmax(p_.detach()[:, :, :-1], dim=1)),
                                                  min=0, max=16) * mask[:, :, 1:])
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"steps_per_s": 1.0 / float(np.median(times)), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
