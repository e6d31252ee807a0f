#!/usr/bin/env python3
"""The PyTorch side of `holo bench segmentation --model mucon` and of MuCon's tests: MuCon as its
release defines it (src/mucon/models.py, masks.py, core/modules/temporal.py), written out here
without the release's configuration and training framework, and its weakly supervised training
step (L_mu + L_t + 0.1 L_l + 0.1 L_s, SGD at 0.01) on the features and labels Holo times; prints
JSON: steps per second. Parameter names are the release's.

`variant="release"` reproduces the released code's choices where it departs from the thesis's
text; `variant="thesis"` follows the text (docs/segmentation.md, "MuCon")."""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

J = 100  # template width


def rand_p(*sz):
    return nn.Parameter(torch.randn(sz) / math.sqrt(sz[0]))


class WaveNetLayer(nn.Module):
    def __init__(self, channels, dilation, drop):
        super().__init__()
        self.dilated_conv = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation)
        self.conv_1x1 = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.conv_1x1(F.relu(self.dilated_conv(x)))) + x


class WaveNetBlock(nn.Module):
    def __init__(self, in_channels, hidden, layers, pool_after, drop):
        super().__init__()
        self.first_conv = nn.Conv1d(in_channels, hidden, 1)
        self.last_conv = nn.Conv1d(hidden, hidden, 1)
        self.layers = []
        self.pool_after = pool_after
        for i in range(layers):
            layer = WaveNetLayer(hidden, 2 ** i, drop)
            self.layers.append(layer)
            self.add_module("l_{}".format(i), layer)

    def forward(self, x):
        x = F.relu(self.first_conv(x))
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.pool_after:
                x = F.max_pool1d(x, kernel_size=2)
        return self.last_conv(F.relu(x))


class MuCon(nn.Module):
    def __init__(self, in_dim, classes, hidden=128, layers=11, pool_after=(1, 2, 4, 8), drop=0.25):
        super().__init__()
        h, n = hidden, classes
        self.classes = classes
        self.ft = WaveNetBlock(in_dim, h, layers, pool_after, drop)
        self.ft_last_gn = nn.GroupNorm(32, h)
        self.ft_last_dropout = nn.Dropout(drop)
        self.fs_encoder_lstm = nn.LSTM(h, h, batch_first=True, bidirectional=True)
        self.fs_encoder_hidden_out = nn.Linear(2 * h, h)
        self.fs_encoder_cn_out = nn.Linear(2 * h, h)
        self.fs_decoder_attention_W1 = rand_p(2 * h, h)
        self.fs_decoder_attention_l2 = nn.Linear(h, h)
        self.fs_decoder_attention_V = rand_p(h)
        self.fs_decoder_embedding = nn.Embedding(n + 2, h)
        self.fs_decoder_embedding_drop = nn.Dropout(drop)
        self.fs_decoder_attn_combine = nn.Linear(2 * h + h, h)
        self.fs_decoder_lstm = nn.LSTM(h, h)
        self.fs_decoder_transcript = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n + 1))
        self.fs_decoder_length = nn.Sequential(nn.Linear(h + n + 1, h // 2), nn.ReLU(), nn.Linear(h // 2, 1))
        self.conv_classifier = nn.Conv1d(h, n, 1)

    def encode(self, x):  # 1 x D x T -> 1 x T' x h
        z = self.ft(x)
        return self.ft_last_dropout(F.relu(self.ft_last_gn(z))).permute(0, 2, 1)

    def classify(self, z, frames):  # -> T x N
        return self.conv_classifier(F.interpolate(z.permute(0, 2, 1), frames)).squeeze(0).permute(1, 0)

    def decode(self, z, teacher=None, max_steps=100):
        out, (hn, cn) = self.fs_encoder_lstm(z)
        hidden = self.fs_encoder_hidden_out(hn.view(1, -1)).unsqueeze(0)
        cell = self.fs_encoder_cn_out(cn.view(1, -1)).unsqueeze(0)
        out = out[0]
        keys = out @ self.fs_decoder_attention_W1
        symbol = torch.tensor([self.classes + 1])
        steps = len(teacher) + 1 if teacher is not None else max_steps
        log_probs, lengths, transcript = [], [], []
        for step in range(steps):
            emb = self.fs_decoder_embedding_drop(F.relu(self.fs_decoder_embedding(symbol)))
            u = torch.tanh(keys + self.fs_decoder_attention_l2(hidden.view(1, -1)))
            weights = F.softmax(u @ self.fs_decoder_attention_V, dim=0)
            applied = (weights.unsqueeze(1) * out).sum(dim=0, keepdim=True)
            combined = F.relu(self.fs_decoder_attn_combine(torch.cat((emb, applied), 1))).unsqueeze(0)
            dec, (hidden, cell) = self.fs_decoder_lstm(combined, (hidden, cell))
            scores = self.fs_decoder_transcript(dec)
            lengths.append(self.fs_decoder_length(F.relu(torch.cat((combined, scores), 2))).squeeze())
            log_probs.append(F.log_softmax(scores.squeeze(0), dim=1))
            if teacher is not None:
                symbol = torch.tensor([teacher[step] if step < len(teacher) else self.classes])
            else:
                s = log_probs[-1].argmax(dim=1)
                if s.item() == self.classes:
                    break
                transcript.append(s.item())
                symbol = s
        m = len(teacher) if teacher is not None else len(transcript)
        return torch.cat(log_probs, 0), torch.stack(lengths[:m]) if m else torch.zeros(0), transcript


def template(shape):
    if shape == "box":
        return torch.ones(J)
    if shape == "bell":
        n = torch.arange(J, dtype=torch.float64) - (J - 1) / 2.0
        return torch.exp(-0.5 * (n / (J / 5.0)) ** 2).float()
    w1 = J / 2  # trapezoid, as the release builds it
    t = torch.ones(J)
    t[: int(w1 / 2)] = torch.arange(start=0.5, end=1, step=0.5 / (w1 / 2))
    t[-int(w1 / 2):] = torch.arange(start=1, end=0.5, step=-0.5 / (w1 / 2))
    return t


def masks_release(frames, lengths, overlap, shape):
    """create_masks of the release: affine_grid and grid_sample with align_corners = True."""
    b = lengths.size(0)
    tmpl = template(shape).repeat((b, 1)).view(b, 1, 1, J)
    L = lengths.clone()
    pis = torch.cumsum(L, 0) - L
    L = L * (1.0 + 2 * overlap)
    pis = pis - L * (overlap / 2)
    s = frames / L
    x = -(pis + L / 2 - frames / 2) / (L / 2)
    theta = torch.zeros(b, 2, 3)
    theta = torch.stack([torch.stack([s, torch.zeros_like(s), x], 1),
                         torch.stack([torch.zeros_like(s), s, torch.zeros_like(s)], 1)], 1)
    grid = F.affine_grid(theta, torch.Size((b, 1, 1, frames)), align_corners=True)
    return F.grid_sample(tmpl, grid, align_corners=True).view(b, frames), L


def masks_thesis(frames, lengths, overlap, shape):
    """Eq. 9.6-9.9: frames t = 1..T, template points j = 1..J, a linear kernel."""
    tmpl = template(shape)
    starts = torch.cumsum(lengths, 0) - lengths - lengths * overlap
    L = lengths * (1.0 + 2 * overlap)
    t = torch.arange(1, frames + 1, dtype=lengths.dtype)
    u = J * (t.unsqueeze(0) - starts.unsqueeze(1)) / L.unsqueeze(1)  # M x T, 1-based
    j = torch.arange(1, J + 1, dtype=lengths.dtype)
    kernel = torch.clamp(1 - (u.unsqueeze(2) - j).abs(), min=0)  # M x T x J
    return (kernel * tmpl).sum(2), L


def losses(y, log_probs, log_lengths, transcript, labels=None, variant="thesis", shape="box", overlap=0.0, width=2.0):
    frames, n = y.shape
    target = torch.tensor(transcript + [n])
    lt = F.nll_loss(log_probs, target, reduction="sum")
    absolute = frames * F.softmax(log_lengths, 0)
    make = masks_release if variant == "release" else masks_thesis
    w, grown = make(frames, absolute, overlap, shape)
    g = (w @ y) / grown.unsqueeze(1)
    lmu = F.nll_loss(F.log_softmax(g, 1), torch.tensor(transcript), reduction="mean" if variant == "release" else "sum")
    ll = (F.relu(log_lengths - width) + F.relu(-width - log_lengths)).sum()
    lp = F.log_softmax(y, 1)
    d2 = (lp[1:] - lp[:-1].detach()) ** 2
    ls = d2.mean().clamp(0, 16) if variant == "release" else d2.clamp(0, 16).mean()
    out = {"transcript": lt, "consistency": lmu, "length": ll, "smoothing": ls}
    if labels is not None:
        out["classification"] = F.cross_entropy(y, torch.tensor(labels))
        runs = []
        for i, c in enumerate(labels):
            if i == 0 or c != labels[i - 1]:
                runs.append(0)
            runs[-1] += 1
        rel = torch.tensor(runs, dtype=torch.float32) / frames
        out["supervised_length"] = (F.mse_loss(F.softmax(log_lengths, 0), rel) if variant == "release"
                                    else F.mse_loss(log_lengths, rel.log()))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--features", required=True)  # D x T float32 .npy
    p.add_argument("--labels", required=True)    # 1 x T float32 .npy (class ids); its runs are the transcript
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=11)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(np.load(a.features)).unsqueeze(0)
    labels = [int(c) for c in np.load(a.labels)[0]]
    transcript = [c for i, c in enumerate(labels) if i == 0 or c != labels[i - 1]]
    frames = x.shape[2]
    net = MuCon(x.shape[1], a.classes, hidden=a.hidden, layers=a.layers)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, weight_decay=0.005)

    def step():
        opt.zero_grad()
        z = net.encode(x)
        y = net.classify(z, frames)
        lp, ll, _ = net.decode(z, transcript)
        l = losses(y, lp, ll, transcript)
        loss = l["consistency"] + l["transcript"] + 0.1 * l["length"] + 0.1 * l["smoothing"]
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
