#!/usr/bin/env python3
"""The Python side of `holo bench loader`: the same training clips loaded by a
torch.utils.data.DataLoader with worker processes, decoding as PySlowFast's Kinetics loader does
(slowfast/datasets/kinetics.py + decoder.py + utils.py), for a side-by-side ratio with Holo's
ClipLoader. Run with a Python that has PyTorch and PyAV. Usage: loader_baseline.py PLAN.json
(written by holo bench loader).

The plan lists the dataset's records (path, label), the clip (frames, stride), the transform
(random short side in [scale_min, scale_max], random crop `crop`, horizontal flip, mean / std),
the batch size, the worker count, and how many batches to time after how many untimed ones.
Per sample, as PySlowFast's __getitem__: open the container (thread_type "AUTO"), pick a random
clip start, decode the clip's time range (pyav_decode_stream, shared with decode_baseline.py),
convert every decoded frame to RGB at full size, pick the frames with torch.linspace +
index_select (temporal_sampling), normalise (tensor_normalize), then
random_short_side_scale_jitter (bilinear interpolate on C x T x H x W), random_crop and
horizontal_flip. The frame table of each file (packet timestamps) is built once before the
DataLoader starts, outside the timing. Prints JSON {"clips", "seconds", "workers"}, or
{"error": "<reason>"} when this Python cannot run it (no PyAV).
"""
import json
import math
import os
import random
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)

try:
    import av
except ImportError as e:  # e.g. a PyTorch-only environment
    print(json.dumps({"error": "PyAV: " + str(e)}))
    sys.exit(0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decode_baseline import pyslowfast_decode_stream  # noqa: E402


class ClipDataset(torch.utils.data.Dataset):
    def __init__(self, plan, tables):
        self.plan = plan
        self.records = [(f["path"], f["label"]) for f in plan["files"]]
        self.tables = tables
        self.mean = torch.tensor(plan["mean"], dtype=torch.float32)
        self.std = torch.tensor(plan["std"], dtype=torch.float32)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        p = self.plan
        path, label = self.records[i]
        pts = self.tables[path]
        span = (p["frames"] - 1) * p["stride"] + 1
        first = random.randint(0, max(0, len(pts) - span))
        last = min(first + span - 1, len(pts) - 1)
        container = av.open(path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = pyslowfast_decode_stream(container, pts[first], pts[last], stream)
        container.close()
        frames = torch.as_tensor(np.stack([frame.to_rgb().to_ndarray() for frame in frames]))
        # temporal_sampling over the decoded range.
        index = torch.clamp(torch.linspace(0, last - first, p["frames"]), 0, frames.shape[0] - 1).long()
        frames = torch.index_select(frames, 0, index)
        # tensor_normalize (T H W C), then C T H W for spatial_sampling.
        x = (frames.float() / 255.0 - self.mean) / self.std
        x = x.permute(3, 0, 1, 2)
        # random_short_side_scale_jitter.
        size = int(round(random.uniform(p["scale_min"], p["scale_max"])))
        h, w = x.shape[2], x.shape[3]
        if w < h:
            new_w, new_h = size, int(math.floor(float(h) / w * size))
        else:
            new_h, new_w = size, int(math.floor(float(w) / h * size))
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
        # random_crop, horizontal_flip.
        crop = p["crop"]
        y0 = random.randint(0, new_h - crop)
        x0 = random.randint(0, new_w - crop)
        x = x[:, :, y0:y0 + crop, x0:x0 + crop]
        if random.random() < 0.5:
            x = x.flip(-1)
        return x.contiguous(), label


def main():
    plan = json.load(open(sys.argv[1]))
    tables = {}
    for f in plan["files"]:
        if f["path"] in tables:
            continue
        container = av.open(f["path"])
        stream = container.streams.video[0]
        tables[f["path"]] = sorted(pk.pts for pk in container.demux(stream) if pk.pts is not None)
        container.close()
    workers = plan["workers"]
    generator = torch.Generator()
    generator.manual_seed(plan["seed"])
    kwargs = {}
    if workers > 0:  # the same batches in flight as Holo's loader: prefetch in all
        kwargs["prefetch_factor"] = max(1, -(-plan["prefetch"] // workers))
    loader = torch.utils.data.DataLoader(ClipDataset(plan, tables), batch_size=plan["batch"], shuffle=True,
                                         num_workers=workers, drop_last=True, generator=generator, **kwargs)
    it = iter(loader)
    for _ in range(plan["warmup_batches"]):
        next(it)
    clips = 0
    t0 = time.perf_counter()
    for _ in range(plan["batches"]):
        x, _ = next(it)
        clips += x.shape[0]
    seconds = time.perf_counter() - t0
    del it
    print(json.dumps({"clips": clips, "seconds": seconds, "workers": workers}))


if __name__ == "__main__":
    main()
