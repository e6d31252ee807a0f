#!/usr/bin/env python3
"""The Python side of `holo bench decode`: the same clips loaded with PyAV (a hand-tuned loader),
with PySlowFast's loader (slowfast/datasets/decoder.py `pyav_decode`) and with
torchvision.io.read_video, for a side-by-side ratio. Run with /usr/bin/python3 (PyAV,
torchvision). Usage: decode_baseline.py PLAN.json  (written by holo bench decode).

The plan lists files and clip start frames; a clip is `frames` frames `stride` apart, scaled
to `short_side` as uint8 RGB. Prints JSON: {"pyav": {"clips", "seconds"}, "pyslowfast": {...}, "torchvision": {...}}.
A loader that cannot run with this Python (no PyAV, no torchvision, or an API it lacks) gets
{"error": "<reason>"} instead, so that the other columns still have their figures.
"""
import json
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # every loader needs both: each column says why it has no figure
    print(json.dumps({name: {"error": str(e)} for name in ("pyav", "pyslowfast", "torchvision")}))
    sys.exit(0)

try:
    import av
except ImportError as e:  # e.g. a PyTorch-only environment
    av = None
    AV_ERROR = "PyAV: " + str(e)
try:
    import torchvision.io
except ImportError as e:
    torchvision = None
    TORCHVISION_ERROR = "torchvision: " + str(e)


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


def pyslowfast_decode_stream(container, start_pts, end_pts, stream, buffer_size=0):
    """slowfast/datasets/decoder.py `pyav_decode_stream`: seek to the start minus a margin (to
    the keyframe before it), decode forward, keep the frames from start_pts up to the first one
    past end_pts, sorted by timestamp."""
    margin = 1024
    seek_offset = max(start_pts - margin, 0)
    container.seek(seek_offset, any_frame=False, backward=True, stream=stream)
    frames = {}
    buffer_count = 0
    for frame in container.decode(video=0):
        if frame.pts < start_pts:
            continue
        if frame.pts <= end_pts:
            frames[frame.pts] = frame
        else:
            buffer_count += 1
            frames[frame.pts] = frame
            if buffer_count >= buffer_size:
                break
    return [frames[pts] for pts in sorted(frames)]


def pyslowfast_clips(plan):
    """PySlowFast's Kinetics loader as run by its users: __getitem__ opens the container per clip
    (`get_video_container`, thread_type "AUTO" with DATA_LOADER.ENABLE_MULTI_THREAD_DECODE),
    `pyav_decode` decodes the clip's time range and converts every frame with
    `frame.to_rgb().to_ndarray()` at full resolution, `temporal_sampling` picks num_frames by
    torch.linspace + index_select, and the transform scales the short side with
    F.interpolate(bilinear) on float frames. The clip's time range is taken from the same frame
    table as the other loaders (built outside the timed loop; PySlowFast derives it from the
    stream's duration / frames, which is the same for these constant-rate files). Output uint8
    like the other loaders (no normalisation, no crop)."""
    n = 0
    tables = {}
    for entry in plan["files"]:
        container = av.open(entry["path"])
        stream = container.streams.video[0]
        tables[entry["path"]] = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        container.close()
    t0 = time.perf_counter()
    for entry in plan["files"]:
        pts = tables[entry["path"]]
        for start in entry["starts"]:
            first = min(start, len(pts) - 1)
            last = min(start + (plan["frames"] - 1) * plan["stride"], len(pts) - 1)
            container = av.open(entry["path"])
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = pyslowfast_decode_stream(container, pts[first], pts[last], stream)
            container.close()
            frames = torch.as_tensor(np.stack([frame.to_rgb().to_ndarray() for frame in frames]))
            # temporal_sampling(frames, start_idx, end_idx, num_samples): over the decoded range.
            index = torch.linspace(0, last - first, plan["frames"])
            index = torch.clamp(index, 0, frames.shape[0] - 1).long()
            frames = torch.index_select(frames, 0, index)
            # T H W C -> T C H W, short_side_scale (bilinear, align_corners=False).
            x = frames.permute(0, 3, 1, 2).float()
            w, h = scaled(x.shape[3], x.shape[2], plan["short_side"])
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).round().to(torch.uint8)
            n += x.shape[0] == plan["frames"]
    return n, time.perf_counter() - t0


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
    for name, fn in (("pyav", pyav_clips), ("pyslowfast", pyslowfast_clips), ("torchvision", torchvision_clips)):
        if av is None:
            out[name] = {"error": AV_ERROR}
            continue
        if name == "torchvision" and torchvision is None:
            out[name] = {"error": TORCHVISION_ERROR}
            continue
        try:
            t0 = time.perf_counter()
            clips = fn(plan)
            seconds = time.perf_counter() - t0
        except Exception as e:  # one loader's failure leaves the others' figures
            out[name] = {"error": "%s: %s" % (type(e).__name__, e)}
            continue
        if isinstance(clips, tuple):  # the loader timed itself (set-up excluded)
            clips, seconds = clips
        out[name] = {"clips": clips, "seconds": seconds}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
