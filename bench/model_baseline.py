#!/usr/bin/python3
"""The networks of holo::models in PyTorch eager, with the same parameter names.

Used as the reference of the model tests (parameter counts, outputs of C++ weights loaded
here, TorchScript files made here and run in C++) and as the baseline of `holo bench model`.

  model_baseline.py count NAME [--classes N] [--frames T] [--width W] [--heads a,b,...]
  model_baseline.py timm NAME --weights HOLO.pt --out TIMM.pt [...]  # transformers: heads.0.* -> head.*
  model_baseline.py forward NAME --weights W.pt --io IO.pt [...]   # IO.pt: {"input"} -> adds "python"
  model_baseline.py script NAME --weights W.pt --out M.pt [...]     # traced TorchScript, eval mode
  model_baseline.py bench NAME --batch B --frames T --size S --threads K --iters I [--warmup W]
                    [--weights W.pt] [--input IN.pt]   # IN.pt: {"input", "target"} (holo bench model)
                    [--device cpu|cuda|cuda:N] [--precision fp32|bf16|fp16]

Runs under PyTorch 1.13 (Debian's python3-torch) and 2.x: files are read by load() below
(weights-only where the version can allow LibTorch's container tag), and mixed precision uses
torch.autocast(device_type, dtype) with a fixed fp16 loss scale (no torch.cuda.amp names).

Transformers (deit_ti/s/b, timesformer_s/b, xvit_s/b and the families deit, timesformer, xvit)
live in bench/transformer_baseline.py, whose docstring is their architecture; they take
--embed-dim, --num-heads, --depth (blocks), --patch-size (16), --image-size (224; bench: --size)
and --xvit-shift-div (4).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # transformer_baseline.py beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformer_baseline import build_transformer, is_transformer, timm_state_dict  # noqa: E402

FP16_LOSS_SCALE = 1024.0  # models/bench.h kBenchFp16LossScale


def load(path):
    """A file of tensors (a state dict, or the inputs Holo writes), on the CPU.

    LibTorch's pickler tags typed containers with torch.jit._pickle.restore_type_tag, which the
    weights-only unpickler (torch.load's default since 2.6) refuses unless allowed. PyTorch 2.4+
    allows it and loads weights-only; older versions have no allow list and load as they always
    did (the files are Holo's own, written for this run).
    """
    if hasattr(torch.serialization, "add_safe_globals"):
        from torch.jit._pickle import restore_type_tag
        torch.serialization.add_safe_globals([restore_type_tag])
        return torch.load(path, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu")


def scale(c, width, multiple=1):
    return max(1, int(math.floor(c * width / multiple + 0.5))) * multiple


def conv3d(i, o, k, s, groups=1):
    return nn.Conv3d(i, o, k, stride=s, padding=tuple(x // 2 for x in k), groups=groups, bias=False)


class Stc(nn.Module):
    """scb_hidden: "table" (C/r, Table 4.1) or "text" ((T*C)/r, eq. 4.5), as models/stc.h."""

    def __init__(self, c, frames, r, tcb=True, scb=True, scb_hidden="table"):
        super().__init__()
        self.frames = frames
        self.use_tcb, self.use_scb = tcb, scb
        if tcb:
            h = max(1, c // r)
            self.tcb_fc1, self.tcb_fc2 = nn.Linear(c, h), nn.Linear(h, c)
        if scb:
            tc = frames * c
            h = max(1, (tc if scb_hidden == "text" else c) // r)
            self.scb_fc1, self.scb_fc2 = nn.Linear(tc, h), nn.Linear(h, c)

    def forward(self, x):
        n, c = x.shape[0], x.shape[1]
        outs = []
        if self.use_tcb:
            s = torch.sigmoid(self.tcb_fc2(F.relu(self.tcb_fc1(x.mean((2, 3, 4))))))
            outs.append(x * s.view(n, c, 1, 1, 1))
        if self.use_scb:
            z = x.mean((3, 4))
            if z.shape[2] != self.frames:
                z = F.interpolate(z, size=self.frames, mode="linear", align_corners=False)
            z = z.transpose(1, 2).reshape(n, self.frames * c)
            s = torch.sigmoid(self.scb_fc2(F.relu(self.scb_fc1(z))))
            outs.append(x * s.view(n, c, 1, 1, 1))
        return 0.5 * (outs[0] + outs[1]) if len(outs) == 2 else outs[0]


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        st, ss = c["stride_t"], c["stride_s"]
        mid2p1 = (c["in"] * c["mid"] * 27) // (c["in"] * 9 + 3 * c["mid"])
        if not c["bottleneck"]:
            specs = [(c["in"], c["mid"], c["kt"], 3, st, ss, 1), (c["mid"], c["mid"], c["kt"], 3, 1, 1, 1)]
        else:
            kta = c["kt"] if c["temporal_on_first"] else 1
            ktb = 1 if c["temporal_on_first"] else c["kt"]
            specs = [(c["in"], c["mid"], kta, 1, 1, 1, 1), (c["mid"], c["mid"], ktb, 3, st, ss, c["groups"]),
                     (c["mid"], c["out"], 1, 1, 1, 1, 1)]
        self.n = len(specs)
        self.factorised = []
        for i, (a, b, kt, ks, s_t, s_s, g) in enumerate(specs, 1):
            f = c["style"] == "2plus1d" and ks == 3 and kt > 1
            self.factorised.append(f)
            if f:
                setattr(self, f"conv{i}_s", conv3d(a, mid2p1, (1, 3, 3), (1, s_s, s_s)))
                setattr(self, f"conv{i}_m", nn.BatchNorm3d(mid2p1))
                setattr(self, f"conv{i}_t", conv3d(mid2p1, b, (kt, 1, 1), (s_t, 1, 1)))
            else:
                setattr(self, f"conv{i}", conv3d(a, b, (kt, ks, ks), (s_t, s_s, s_s), g))
            setattr(self, f"bn{i}", nn.BatchNorm3d(a if c["preact"] else b))
        self.stc = Stc(c["out"], c["stc_frames"], c["stc_r"], c["stc_tcb"], c["stc_scb"],
                       c["stc_scb_hidden"]) if c["stc"] else None
        self.reshape = st != 1 or ss != 1 or c["in"] != c["out"]
        self.downsample = None
        if self.reshape and c["shortcut"] == "B":
            layers = [conv3d(c["in"], c["out"], (1, 1, 1), (st, ss, ss))]
            if not c["preact"]:
                layers.append(nn.BatchNorm3d(c["out"]))
            self.downsample = nn.Sequential(*layers)

    def conv(self, i, x):
        if self.factorised[i - 1]:
            h = F.relu(getattr(self, f"conv{i}_m")(getattr(self, f"conv{i}_s")(x)))
            return getattr(self, f"conv{i}_t")(h)
        return getattr(self, f"conv{i}")(x)

    def forward(self, x):
        c = self.c
        if not c["preact"]:
            out = x
            for i in range(1, self.n + 1):
                out = getattr(self, f"bn{i}")(self.conv(i, out))
                if i < self.n:
                    out = F.relu(out)
            pre = None
        else:
            pre = F.relu(self.bn1(x))
            out = self.conv(1, pre)
            for i in range(2, self.n + 1):
                out = self.conv(i, F.relu(getattr(self, f"bn{i}")(out)))
        if self.stc is not None:
            out = self.stc(out)
        sc = x
        if self.downsample is not None:
            sc = self.downsample(pre if c["preact"] else x)
        elif self.reshape:
            if c["stride_t"] != 1 or c["stride_s"] != 1:
                sc = F.avg_pool3d(x, 1, stride=(c["stride_t"], c["stride_s"], c["stride_s"]))
            if c["out"] > c["in"]:
                z = torch.zeros(sc.shape[0], c["out"] - c["in"], *sc.shape[2:], dtype=sc.dtype, device=sc.device)
                sc = torch.cat([sc, z], 1)
        out = out + sc
        return out if c["preact"] else F.relu(out)


class Stem(nn.Module):
    def __init__(self, style, out, kt, st, pool, pool_k, pool_s):
        super().__init__()
        self.pool, self.pool_k, self.pool_s = pool, pool_k, pool_s
        self.kt, self.st = kt, st
        if style == "conv":
            self.conv, self.bn = conv3d(3, out, (kt, 7, 7), (st, 2, 2)), nn.BatchNorm3d(out)
            self.conv_t = None
        else:
            mid = max(1, int(math.floor(45.0 * out / 64.0 + 0.5)))
            self.conv, self.bn = conv3d(3, mid, (1, 7, 7), (1, 2, 2)), nn.BatchNorm3d(mid)
            self.conv_t, self.bn_t = conv3d(mid, out, (kt, 1, 1), (st, 1, 1)), nn.BatchNorm3d(out)

    def out_frames(self, t):
        t = (t + 2 * (self.kt // 2) - self.kt) // self.st + 1
        if self.pool:
            t = (t + 2 * (self.pool_k[0] // 2) - self.pool_k[0]) // self.pool_s[0] + 1
        return t

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        if self.conv_t is not None:
            h = F.relu(self.bn_t(self.conv_t(h)))
        if self.pool:
            h = F.max_pool3d(h, self.pool_k, self.pool_s, tuple(k // 2 for k in self.pool_k))
        return h


def sgs_weights(delta, bins, kernel, eps):
    dmax = delta.max(1, keepdim=True)[0]
    gamma = dmax.clamp_min(eps) / (2 * bins)
    if kernel in ("linear", "linear_clamped"):  # eq. 6.6 verbatim, or with Delta clamped (models/sgs.h)
        b = torch.arange(1, bins + 1, dtype=delta.dtype, device=delta.device)
        beta = (2.0 * b - 1.0).unsqueeze(0) * gamma
        d = delta
        if kernel == "linear_clamped":
            d = torch.max(torch.min(delta, beta[:, -1:]), beta[:, :1])
        psi = F.relu(1.0 - (d.unsqueeze(2) - beta.unsqueeze(1)).abs() / gamma.unsqueeze(2))
        if kernel == "linear":  # rounding residues at a bin's edge count as 0 (models/sgs.h kSgsZeroWeight)
            psi = psi * (psi.detach() > 1e-5).to(psi.dtype)  # every frame at weight 0 (all Delta equal): one bin of all frames
            empty = (psi.detach().sum((1, 2)) == 0).view(-1, 1, 1)
            first = torch.zeros(1, 1, bins, dtype=delta.dtype, device=delta.device)
            first[..., 0] = 1.0
            psi = torch.where(empty, first.expand_as(psi), psi)
        return psi
    idx = torch.floor(delta.detach() / (2.0 * gamma.detach())).clamp(0, bins - 1).long()
    onehot = F.one_hot(idx, bins).to(delta.dtype)
    return onehot / onehot.sum(1, keepdim=True).clamp_min(1.0)


class Sgs(nn.Module):
    def __init__(self, c, bins, dim=8, kernel="linear", measure="mean_distance", eps=1e-6):
        super().__init__()
        self.bins, self.dim, self.kernel, self.measure, self.eps = bins, dim, kernel, measure, eps
        h = max(1, c // 2)
        self.fc1, self.fc2, self.bn = nn.Linear(c, h), nn.Linear(h, dim), nn.BatchNorm1d(dim)

    def forward(self, x):
        n, c, t, hh, ww = x.shape
        p = x.mean((3, 4)).transpose(1, 2).reshape(n * t, c)
        z = self.bn(self.fc2(F.relu(self.fc1(p)))).view(n, t, self.dim)
        if self.measure == "mean_distance":
            z = z - z.mean(1, keepdim=True)
        delta = (z * z).sum(2).clamp_min(1e-24).sqrt()
        psi = sgs_weights(delta, self.bins, self.kernel, self.eps)
        occupied = psi.detach().sum(1) > 0
        o = torch.bmm(x.permute(0, 1, 3, 4, 2).reshape(n, c * hh * ww, t), psi)
        active = occupied.sum(1)
        bmax = max(1, int(active.max()))
        key = (~occupied).long() * self.bins + torch.arange(self.bins, device=x.device)
        order = key.sort(1)[1][:, :bmax]
        mask = torch.arange(bmax, device=x.device).unsqueeze(0) < active.unsqueeze(1)
        picked = o.gather(2, order.unsqueeze(1).expand(n, c * hh * ww, bmax)) * mask.unsqueeze(1).to(o.dtype)
        return picked.reshape(n, c, hh, ww, bmax).permute(0, 1, 4, 2, 3).contiguous(), active


LAYERS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3],
          152: [3, 8, 36, 3]}


def family_defaults(family, depth, cardinality=32):
    deep = depth >= 50
    o = dict(layers=LAYERS[depth], bottleneck=deep, expansion=4, cardinality=1, widths=[64, 128, 256, 512],
             stem_style="conv", stem_channels=64, stem_kt=7, stem_st=1, stem_pool=True, pool_k=(3, 3, 3),
             pool_s=(2, 2, 2), t_strides=[1, 2, 2, 2], s_strides=[1, 2, 2, 2], t_kernels=[3, 3, 3, 3],
             temporal_on_first=False, style="3d", shortcut="A", preact=False, stc=False, stc_tcb=True,
             stc_scb=True, stc_r=4, stc_scb_hidden="table", sgs_after="", sgs_bins=0, sgs_dim=8, sgs_kernel="linear",
             sgs_measure="mean_distance")
    if family in ("resnet3d", "stc_resnet"):
        o["shortcut"] = "B" if deep else "A"
    elif family in ("resnext3d", "stc_resnext"):
        o.update(widths=[128, 256, 512, 1024], expansion=2, cardinality=cardinality, shortcut="B")
    elif family == "r2plus1d":
        o.update(stem_style="2plus1d", stem_kt=3, stem_pool=False, style="2plus1d", shortcut="B")
    elif family == "atfr_resnet3d":
        # The authors' ResNet3D at every depth (models/network.cc family_defaults).
        o.update(bottleneck=True, stem_kt=5, pool_k=(1, 3, 3), pool_s=(1, 2, 2), temporal_on_first=True,
                 t_kernels=[3, 1, 1, 3], t_strides=[1, 1, 1, 1], shortcut="B", widths=[8, 64, 128, 256],
                 stem_channels=8)
        if depth == 18:
            o.update(layers=[2, 2, 2, 2])
    if family.startswith("stc_"):
        o["stc"] = True
    return o


def make_stages(o, width, inp, frames):
    stages, chans, fr = [], [], []
    t = frames
    for s in range(4):
        base = scale(o["widths"][s], width)
        mid = scale(o["widths"][s], width, o["cardinality"]) if o["cardinality"] > 1 else base
        out = base * o["expansion"] if o["bottleneck"] else base
        blocks = []
        for b in range(o["layers"][s]):
            st = o["t_strides"][s] if b == 0 else 1
            if b == 0:
                t = (t - 1) // st + 1
            c = dict(**{"in": inp}, mid=mid if o["bottleneck"] else out, out=out, bottleneck=o["bottleneck"],
                     groups=o["cardinality"], kt=o["t_kernels"][s], temporal_on_first=o["temporal_on_first"],
                     stride_t=st, stride_s=o["s_strides"][s] if b == 0 else 1, style=o["style"],
                     shortcut=o["shortcut"], preact=o["preact"], stc=o["stc"], stc_frames=t, stc_r=o["stc_r"],
                     stc_tcb=o["stc_tcb"], stc_scb=o["stc_scb"], stc_scb_hidden=o["stc_scb_hidden"])
            blocks.append(ResBlock(c))
            inp = out
        if o["preact"] and s == 3:
            blocks += [nn.BatchNorm3d(out), nn.ReLU()]
        stages.append(nn.Sequential(*blocks))
        chans.append(out)
        fr.append(t)
    return stages, chans, fr


class ResNet3d(nn.Module):
    def __init__(self, o, width, frames, heads, dropout=0.5):
        super().__init__()
        stem_out = scale(o["stem_channels"], width)
        self.stem = Stem(o["stem_style"], stem_out, o["stem_kt"], o["stem_st"], o["stem_pool"], o["pool_k"], o["pool_s"])
        t0 = self.stem.out_frames(frames)
        stages, chans, fr = make_stages(o, width, stem_out, t0)
        self.res2, self.res3, self.res4, self.res5 = stages
        self.t_strides = o["t_strides"]
        self.sgs_index = -1
        if o["sgs_after"]:
            self.sgs_index = ["stem", "res2", "res3", "res4"].index(o["sgs_after"])
            c = stem_out if self.sgs_index == 0 else chans[self.sgs_index - 1]
            t = t0 if self.sgs_index == 0 else fr[self.sgs_index - 1]
            self.sgs = Sgs(c, o["sgs_bins"] or t, o["sgs_dim"], o["sgs_kernel"], o["sgs_measure"])
        self.feature_dim = chans[3]
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList([nn.Linear(chans[3], h) for h in heads])

    def forward(self, x):
        x = self.stem(x)
        valid = None
        if self.sgs_index == 0:
            x, valid = self.sgs(x)
            self.active_bins = valid
        for s, stage in enumerate([self.res2, self.res3, self.res4, self.res5]):
            x = stage(x)
            if valid is not None and self.t_strides[s] > 1:
                valid = torch.div(valid - 1, self.t_strides[s], rounding_mode="floor") + 1
            if self.sgs_index == s + 1:
                x, valid = self.sgs(x)
                self.active_bins = valid  # B' per clip, as NetworkOutput::active_bins
        if valid is None:
            f = x.mean((2, 3, 4))
        else:
            m = x.mean((3, 4))
            keep = (torch.arange(m.shape[2], device=m.device).unsqueeze(0) < valid.unsqueeze(1)).to(m.dtype).unsqueeze(1)
            f = (m * keep).sum(2) / valid.clamp_min(1).to(m.dtype).unsqueeze(1)
        return self.heads[0](self.dropout(f))


# ---- 2D --------------------------------------------------------------------------------------

def make_stages2d(depth, inp, width):
    from torchvision.models.resnet import BasicBlock, Bottleneck
    layers = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    block = Bottleneck if depth >= 50 else BasicBlock
    stages, chans = [], []
    for s, p in enumerate([64, 128, 256, 512]):
        p = max(1, int(math.floor(p * width + 0.5)))
        blocks = []
        for b in range(layers[s]):
            stride = 2 if (b == 0 and s > 0) else 1
            ds = None
            if stride != 1 or inp != p * block.expansion:
                ds = nn.Sequential(nn.Conv2d(inp, p * block.expansion, 1, stride, bias=False),
                                   nn.BatchNorm2d(p * block.expansion))
            blocks.append(block(inp, p, stride, ds))
            inp = p * block.expansion
        stages.append(nn.Sequential(*blocks))
        chans.append(inp)
    return stages, chans


class Stem2d(nn.Module):
    def __init__(self, out, pool):
        super().__init__()
        self.pool = pool
        self.conv1, self.bn1 = nn.Conv2d(3, out, 7, 2, 3, bias=False), nn.BatchNorm2d(out)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.max_pool2d(h, 3, 2, 1) if self.pool else h


class ResNet2dNetwork(nn.Module):
    def __init__(self, depth, width, heads, dropout=0.5):
        super().__init__()
        stem = max(1, int(math.floor(64 * width + 0.5)))
        self.stem = Stem2d(stem, True)
        stages, chans = make_stages2d(depth, stem, width)
        self.res2, self.res3, self.res4, self.res5 = stages
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList([nn.Linear(chans[3], h) for h in heads])

    def forward(self, clips):
        n, c, t, h, w = clips.shape
        x = self.stem(clips.transpose(1, 2).reshape(n * t, c, h, w))
        for st in [self.res2, self.res3, self.res4, self.res5]:
            x = st(x)
        f = x.mean((2, 3)).view(n, t, -1).mean(1)
        return self.heads[0](self.dropout(f))


class MergeReduce(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn = nn.Conv3d(2 * c, c, 1, bias=False), nn.BatchNorm3d(c)

    def forward(self, own, other):
        return F.relu(self.bn(self.conv(torch.cat([own, other], 1))))


class Pair(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        for k, v in kw.items():
            setattr(self, k, v)


class HatNet(nn.Module):
    def __init__(self, depth, width, frames, heads, stc=False, dropout=0.5):
        super().__init__()
        o = family_defaults("resnet3d", depth)
        o.update(stem_kt=3, stem_pool=False, shortcut="B", stc=stc)
        stem = scale(64, width)
        s3 = Stem("conv", stem, 3, 1, False, (3, 3, 3), (2, 2, 2))
        self.stem = Pair(b3d=s3, b2d=Stem2d(stem, False))
        st3, ch, _ = make_stages(o, width, stem, s3.out_frames(frames))
        st2, _ = make_stages2d(depth, stem, width)
        for s in range(4):
            setattr(self, f"res{s + 2}", Pair(b3d=st3[s], b2d=st2[s]))
            if s < 3:
                setattr(self, f"merge{s + 2}", Pair(to3d=MergeReduce(ch[s]), to2d=MergeReduce(ch[s])))
        self.merge5 = MergeReduce(ch[3])
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList([nn.Linear(ch[3], h) for h in heads])

    def forward(self, clips):
        n = clips.shape[0]

        def frames(c):
            return c.transpose(1, 2).reshape(c.shape[0] * c.shape[2], c.shape[1], c.shape[3], c.shape[4])

        def clip(f):
            return f.view(n, f.shape[0] // n, *f.shape[1:]).transpose(1, 2)

        x3 = self.stem.b3d(clips)
        x2 = clip(self.stem.b2d(frames(clips)))
        for s in range(4):
            r = getattr(self, f"res{s + 2}")
            x3 = r.b3d(x3)
            x2 = clip(r.b2d(frames(x2)))
            if x2.shape[2] != x3.shape[2]:
                x2 = F.adaptive_avg_pool3d(x2, (x3.shape[2], x2.shape[3], x2.shape[4]))
            if s < 3:
                m = getattr(self, f"merge{s + 2}")
                x3, x2 = m.to3d(x3, x2), m.to2d(x2, x3)
        f = self.merge5(x3, x2).mean((2, 3, 4))
        return self.heads[0](self.dropout(f))


# ---- X3D -------------------------------------------------------------------------------------

def round_width(width, multiplier, min_width=8, divisor=8):
    """PySlowFast's round_width (models/x3d.h x3d_round_width)."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def masked_pool(x, valid):
    """Mean over T, H, W; over the first valid[n] bins of clip n when valid is given."""
    if valid is None:
        return x.mean((2, 3, 4))
    m = x.mean((3, 4))
    keep = (torch.arange(m.shape[2], device=m.device).unsqueeze(0) < valid.unsqueeze(1)).to(m.dtype).unsqueeze(1)
    return (m * keep).sum(2) / valid.clamp_min(1).to(m.dtype).unsqueeze(1)


class X3dStem(nn.Module):
    def __init__(self, out, kt=5):
        super().__init__()
        self.conv_xy = conv3d(3, out, (1, 3, 3), (1, 2, 2))
        self.conv = conv3d(out, out, (kt, 1, 1), (1, 1, 1), groups=out)
        self.bn = nn.BatchNorm3d(out)

    def forward(self, x):
        return F.relu(self.bn(self.conv(self.conv_xy(x))))


class X3dSqueezeExcite(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv3d(c, hidden, 1), nn.Conv3d(hidden, c, 1)

    def forward(self, x, valid):
        s = masked_pool(x, valid).view(x.shape[0], x.shape[1], 1, 1, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class X3dBlock(nn.Module):
    def __init__(self, inp, inner, out, stride, se_hidden):
        super().__init__()
        self.branch1 = None
        if inp != out or stride != 1:
            self.branch1 = conv3d(inp, out, (1, 1, 1), (1, stride, stride))
            self.branch1_bn = nn.BatchNorm3d(out)
        self.a, self.a_bn = conv3d(inp, inner, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(inner)
        self.b = conv3d(inner, inner, (3, 3, 3), (1, stride, stride), groups=inner)
        self.b_bn = nn.BatchNorm3d(inner)
        self.se = X3dSqueezeExcite(inner, se_hidden) if se_hidden else None
        self.c, self.c_bn = conv3d(inner, out, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(out)

    def forward(self, x, valid):
        h = F.relu(self.a_bn(self.a(x)))
        h = self.b_bn(self.b(h))
        if self.se is not None:
            h = self.se(h, valid)
        h = self.c_bn(self.c(h * torch.sigmoid(h)))  # Swish
        sc = x if self.branch1 is None else self.branch1_bn(self.branch1(x))
        return F.relu(sc + h)


class X3dStage(nn.Module):
    def __init__(self, blocks, conv5=None, lin5=0):
        super().__init__()
        self.n = len(blocks)
        for i, b in enumerate(blocks):
            self.add_module(str(i), b)
        self.conv_5 = None
        if conv5:
            self.conv_5, self.conv_5_bn = conv3d(conv5[0], conv5[1], (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(conv5[1])
            self.lin_5 = conv3d(conv5[1], lin5, (1, 1, 1), (1, 1, 1))

    def forward(self, x, valid):
        for i in range(self.n):
            x = getattr(self, str(i))(x, valid)
        if self.conv_5 is not None:
            x = F.relu(self.conv_5_bn(self.conv_5(x)))
        return x

    def project(self, pooled):
        return F.relu(self.lin_5(pooled.view(pooled.shape[0], pooled.shape[1], 1, 1, 1))).flatten(1)


class X3d(nn.Module):
    """X3D as models/x3d.h (PySlowFast's X3D), SGS optionally after stem, res2, res3 or res4."""

    def __init__(self, width_factor, depth_factor, frames, heads, dropout=0.5, sgs_after="", sgs_bins=0,
                 sgs_dim=8, sgs_kernel="linear", sgs_measure="mean_distance", bottleneck=2.25, dim_c1=12,
                 dim_c5=2048, se_ratio=0.0625):
        super().__init__()
        c1 = round_width(dim_c1, width_factor)
        self.stem = X3dStem(c1)
        widths, base = [c1], [dim_c1]
        for _ in range(3):
            base.append(round_width(base[-1], 2.0))
        inp = c1
        for s, nb in enumerate([1, 2, 5, 3]):
            out = round_width(base[s], width_factor)
            inner = int(bottleneck * out)
            se = round_width(inner, se_ratio) if se_ratio > 0 else 0
            blocks = [X3dBlock(inp if i == 0 else out, inner, out, 2 if i == 0 else 1, se if i % 2 == 0 else 0)
                      for i in range(int(math.ceil(depth_factor * nb)))]
            last = s == 3
            setattr(self, f"res{s + 2}", X3dStage(blocks, (out, inner) if last else None, dim_c5 if last else 0))
            widths.append(out)
            inp = out
        self.sgs_index = -1
        if sgs_after:
            self.sgs_index = ["stem", "res2", "res3", "res4"].index(sgs_after)
            self.sgs = Sgs(widths[self.sgs_index], sgs_bins or frames, sgs_dim, sgs_kernel, sgs_measure)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList([nn.Linear(dim_c5, h) for h in heads])

    def forward(self, x):
        x = self.stem(x)
        valid = None
        if self.sgs_index == 0:
            x, valid = self.sgs(x)
            self.active_bins = valid
        for s in range(4):
            x = getattr(self, f"res{s + 2}")(x, valid)
            if self.sgs_index == s + 1:
                x, valid = self.sgs(x)
                self.active_bins = valid
        f = self.res5.project(masked_pool(x, valid))
        return self.heads[0](self.dropout(f))


PRESETS = {}
for d in (18, 34, 50, 101):
    PRESETS[f"resnet{d}_2d"] = ("resnet2d", d, False)
for d in (10, 18, 34, 50, 101, 152):
    PRESETS[f"r3d{d}"] = ("resnet3d", d, False)
for d in (50, 101):
    PRESETS[f"rx3d{d}"] = ("resnext3d", d, False)
    PRESETS[f"stc_resnext{d}"] = ("stc_resnext", d, False)
for d in (18, 50, 101):
    PRESETS[f"stc_resnet{d}"] = ("stc_resnet", d, False)
for d in (18, 50):
    PRESETS[f"hatnet_r{d}"] = ("hatnet", d, False)
    PRESETS[f"r3d{d}_atfr"] = ("atfr_resnet3d", d, True)
    PRESETS[f"r2plus1d{d}"] = ("r2plus1d", d, False)
    PRESETS[f"r2plus1d{d}_atfr"] = ("r2plus1d", d, True)
# X3D: depth = residual blocks (26: depth factor 2.2, 55: 5.0); XL at 1.45x the width (2.9), as
# models/network.cc.
for v, d in (("s", 26), ("m", 26), ("l", 55), ("xl", 55)):
    PRESETS[f"x3d_{v}"] = ("x3d", d, False)
    PRESETS[f"x3d_{v}_atfr"] = ("x3d", d, True)
X3D_DEPTH_FACTOR = {26: 2.2, 55: 5.0}


def build(name, depth=None, classes=400, frames=16, width=1.0, heads=None, sgs=False, preact=False,
          stc_branches="both", sgs_kernel="linear", sgs_measure="mean_distance", dropout=0.5,
          stc_scb_hidden="table", sgs_after="res2", embed_dim=None, num_heads=None, patch_size=16,
          image_size=224, xvit_shift_div=4):
    """depth: ResNet depth (default 18), or a transformer family's number of blocks (default 18; presets: 12)."""
    heads = heads or [classes]
    if is_transformer(name):
        return build_transformer(name, heads, frames, embed_dim, num_heads, depth, patch_size, image_size,
                                 xvit_shift_div)
    if depth is None:
        depth = 18
    family = name
    if name in PRESETS:
        family, depth, sgs_on = PRESETS[name]
        sgs = sgs or sgs_on
    if family == "x3d":
        gamma_w = 2.0 * width * (2.9 / 2.0 if name.startswith("x3d_xl") else 1.0)
        return X3d(gamma_w, X3D_DEPTH_FACTOR[depth], frames, heads, dropout, sgs_after if sgs else "",
                   sgs_kernel=sgs_kernel, sgs_measure=sgs_measure)
    if family == "resnet2d":
        return ResNet2dNetwork(depth, width, heads, dropout)
    if family == "hatnet":
        return HatNet(depth, width, frames, heads, dropout=dropout)
    o = family_defaults(family, depth)
    o.update(preact=preact, stc_tcb=stc_branches != "scb", stc_scb=stc_branches != "tcb",
             stc_scb_hidden=stc_scb_hidden)
    if sgs:
        o.update(sgs_after=sgs_after, sgs_kernel=sgs_kernel, sgs_measure=sgs_measure)
    return ResNet3d(o, width, frames, heads, dropout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["count", "forward", "script", "bench", "tv", "timm"])
    ap.add_argument("name")
    ap.add_argument("--depth", type=int, default=None, help="ResNet depth, or transformer family blocks (18; presets fixed)")
    ap.add_argument("--classes", type=int, default=400)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--heads", default="")
    ap.add_argument("--sgs", action="store_true")
    ap.add_argument("--sgs-after", choices=["stem", "res2", "res3", "res4"], default="res2")
    ap.add_argument("--sgs-kernel", choices=["linear", "linear_clamped", "kronecker"], default="linear")
    ap.add_argument("--preact", action="store_true")
    ap.add_argument("--stc-branches", default="both")
    ap.add_argument("--stc-scb-hidden", choices=["table", "text"], default="table")
    ap.add_argument("--weights")
    ap.add_argument("--io")
    ap.add_argument("--input")
    ap.add_argument("--out")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--embed-dim", type=int, default=None, help="transformers: D (preset's)")
    ap.add_argument("--num-heads", type=int, default=None, help="transformers: attention heads (preset's)")
    ap.add_argument("--patch-size", type=int, default=16, help="transformers: P")
    ap.add_argument("--image-size", type=int, default=None, help="transformers: H = W of the input (224; bench: --size)")
    ap.add_argument("--xvit-shift-div", type=int, default=4, help="XViT: f = head dim // this channels each way")
    a = ap.parse_args()
    if a.image_size is None:
        a.image_size = a.size if a.command == "bench" else 224
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    heads = [int(h) for h in a.heads.split(",")] if a.heads else None
    if a.command == "tv":  # torchvision reference counts
        import torchvision
        m = getattr(torchvision.models.video if a.name in ("r3d_18", "r2plus1d_18", "mc3_18") else torchvision.models,
                    a.name)(num_classes=a.classes)
        print(sum(p.numel() for p in m.parameters()))
        return
    if a.command == "count":  # NAME may be a comma-separated list: one "name count" line each
        for name in a.name.split(","):
            m = build(name, a.depth, a.classes, a.frames, a.width, heads, a.sgs, a.preact, a.stc_branches,
                  stc_scb_hidden=a.stc_scb_hidden, sgs_after=a.sgs_after, sgs_kernel=a.sgs_kernel,
                  **transformer_args(a))
            print(name, sum(p.numel() for p in m.parameters()))
        return
    m = build(a.name, a.depth, a.classes, a.frames, a.width, heads, a.sgs, a.preact, a.stc_branches,
                  stc_scb_hidden=a.stc_scb_hidden, sgs_after=a.sgs_after, sgs_kernel=a.sgs_kernel,
                  **transformer_args(a))
    if a.weights:
        m.load_state_dict(load(a.weights), strict=True)
    if a.command == "timm":  # Holo's names -> timm's (heads.0.* -> head.*), a plain torch.save'd state dict
        if not is_transformer(a.name):
            sys.exit(f"timm: {a.name} is not a transformer (deit*, timesformer*, xvit*)")
        if not a.weights or not a.out:
            sys.exit("timm: needs --weights HOLO.pt and --out TIMM.pt")
        torch.save(timm_state_dict(m), a.out)
        return
    if a.command == "forward":
        m.eval()
        io = load(a.io)
        with torch.no_grad():
            io["python"] = m(io["input"])
        if getattr(m, "active_bins", None) is not None:
            io["python_active_bins"] = m.active_bins.long()  # B' per clip (SGS)
        torch.save(io, a.io)
        return
    if a.command == "script":
        m.eval()
        size = a.image_size if is_transformer(a.name) else a.size
        x = torch.randn(1, 3, a.frames, size, size)
        traced = torch.jit.trace(m, x)
        traced.save(a.out)
        return
    if a.command == "bench":
        bench(m, a)


def transformer_args(a):
    return dict(embed_dim=a.embed_dim, num_heads=a.num_heads, patch_size=a.patch_size, image_size=a.image_size,
                xvit_shift_div=a.xvit_shift_div)


def bench(m, a):
    """Forward+backward clips/s as holo bench model measures it (models/bench.cc)."""
    try:
        device = torch.device(a.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        sys.exit(f"--device {a.device}: expected cpu, cuda or cuda:N")
    if a.precision == "fp16" and device.type != "cuda":
        sys.exit(f"--precision fp16 needs a CUDA device (--device cuda); on {a.device} use fp32 or bf16")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {a.device}: this PyTorch sees no CUDA device")
    if a.input:
        data = load(a.input)
        x, y = data["input"], data["target"]
        if x.shape != (a.batch, 3, a.frames, a.size, a.size):
            sys.exit(f"{a.input}: input of shape {tuple(x.shape)}, expected batch x 3 x frames x size x size")
    else:
        x = torch.randn(a.batch, 3, a.frames, a.size, a.size)
        y = torch.randint(0, a.classes, (a.batch,))
    m.to(device)
    m.train()
    x, y = x.to(device), y.to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        with torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = m(x)
        loss = F.cross_entropy(logits.float(), y)
        (loss * FP16_LOSS_SCALE if a.precision == "fp16" else loss).backward()

    for _ in range(a.warmup):
        step()
    bins, steps = [], []
    for _ in range(a.iters):
        sync()
        t0 = time.perf_counter()
        m.zero_grad(set_to_none=True)
        step()
        if getattr(m, "active_bins", None) is not None:
            bins.append(float(m.active_bins.double().mean()))
        sync()
        steps.append(time.perf_counter() - t0)
    steps.sort()
    k = len(steps)
    median = steps[k // 2] if k % 2 else 0.5 * (steps[k // 2 - 1] + steps[k // 2])
    out = {"name": a.name, "clips_per_s": a.batch / median, "threads": torch.get_num_threads(),
           "device": str(device), "precision": a.precision, "torch": torch.__version__}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    if bins:
        out["active_bins"] = sum(bins) / len(bins)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
