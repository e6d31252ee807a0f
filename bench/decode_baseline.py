#!/usr/bin/env python3
"""The Python side of `holo bench decode`: the same clips loaded with PyAV and with
torchvision.io.read_video, for a side-by-side ratio. Run with /usr/bin/python3 (PyAV,
torchvision). Usage: decode_baseline.py PLAN.json  (written by holo bench decode).

The plan lists files and clip start frames; a clip is `frames` frames `stride` apart, scaled
to `short_side` as uint8 RGB. Prints JSON: {"pyav": {"clips", "seconds"}, "torchvision": {...}}.
"""
import json
import sys
import time

import av
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.io


def scaled(w, h, short):
    if w <= h:
        return short, round(h * short / w)
    return round(w * short / h), short


def pyav_clips(plan):
    """Keeps each file open (like Holo's decoder cache), builds the frame table from packet
    timestamps once, then seeks to the keyframe before each clip and decodes forward."""
    n = 0
    for entry in plan["files"]:
        container = av.open(entry["path"])
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = plan["threads"]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        w, h = scaled(stream.codec_context.width, stream.codec_context.height, plan["short_side"])
        for start in entry["starts"]:
            wanted = [min(start + i * plan["stride"], len(pts) - 1) for i in range(plan["frames"])]
            want_pts = {pts[i] for i in wanted}
            last = pts[wanted[-1]]
            container.seek(pts[wanted[0]], stream=stream, backward=True, any_frame=False)
            got = {}
            for frame in container.decode(stream):
                if frame.pts in want_pts:
                    got[frame.pts] = frame.to_ndarray(width=w, height=h, format="rgb24")
                if frame.pts >= last:
                    break
            clip = torch.from_numpy(np.stack([got[pts[i]] for i in wanted]))
            n += clip.shape[0] == plan["frames"]
        container.close()
    return n


def torchvision_clips(plan):
    """read_video between the clip's first and last timestamps, then stride and resize."""
    n = 0
    for entry in plan["files"]:
        container = av.open(entry["path"])
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        container.close()
        for start in entry["starts"]:
            wanted = [min(start + i * plan["stride"], len(pts) - 1) for i in range(plan["frames"])]
            video, _, _ = torchvision.io.read_video(
                entry["path"], start_pts=pts[wanted[0]] * tb, end_pts=pts[wanted[-1]] * tb, pts_unit="sec")
            idx = [min(i - wanted[0], video.shape[0] - 1) for i in wanted]
            x = video[idx].permute(0, 3, 1, 2).float()
            w, h = scaled(x.shape[3], x.shape[2], plan["short_side"])
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).round().to(torch.uint8)
            n += x.shape[0] == plan["frames"]
    return n


def main():
    plan = json.load(open(sys.argv[1]))
    torch.set_num_threads(plan["threads"])
    out = {}
    for name, fn in (("pyav", pyav_clips), ("torchvision", torchvision_clips)):
        t0 = time.perf_counter()
        clips = fn(plan)
        out[name] = {"clips": clips, "seconds": time.perf_counter() - t0}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
