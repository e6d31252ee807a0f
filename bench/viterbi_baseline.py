#!/usr/bin/env python3
"""The Python side of `holo bench viterbi` (docs/benchmarks.md): the same Viterbi alignment of a
transcript with a Poisson length model (train/viterbi.h), written straightforwardly in numpy:
one Python iteration per (segment, end frame), the candidate lengths of that cell as one numpy
vector. Reads the inputs Holo wrote (log-probabilities as .npy, a JSON of transcript, means and
max length), aligns them `--repeat` times, prints JSON: seconds per alignment, score, labels."""
import argparse
import json
import time

import numpy as np


def poisson_table(means, max_len):
    r = np.round(means)
    norms = r * np.log(r) - r
    for c in range(len(means)):
        norms[c] -= sum(np.log(k) for k in range(2, int(means[c]) + 1))
    table = np.full((max_len, len(means)), -np.inf)
    log_fak = 0.0
    for l in range(1, max_len):
        log_fak += np.log(l)
        table[l] = l * np.log(means) - means - log_fak - norms
    return table


def align(lp, transcript, table):
    frames = lp.shape[0]
    longest = table.shape[0] - 1
    n_seg = len(transcript)
    best = np.full((n_seg, frames + 1), -np.inf)
    arg = np.zeros((n_seg, frames + 1), dtype=np.int64)
    for n, a in enumerate(transcript):
        cum = np.concatenate([[0.0], np.cumsum(lp[:, a], dtype=np.float64)])
        for t in range(n + 1, frames - (n_seg - n - 1) + 1):
            ls = np.arange(1, min(longest, t - n) + 1)
            starts = t - ls
            if n == 0:
                before = np.where(starts == 0, 0.0, -np.inf)
            else:
                before = best[n - 1, starts]
            v = before + (cum[t] - cum[starts]) + table[ls, a]
            k = int(np.argmax(v))
            best[n, t] = v[k]
            arg[n, t] = ls[k]
    lengths = [0] * n_seg
    t = frames
    for n in range(n_seg - 1, -1, -1):
        lengths[n] = int(arg[n, t])
        t -= lengths[n]
    labels = np.repeat(transcript, lengths)
    return float(best[n_seg - 1, frames]), labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log-probs", required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    lp = np.load(a.log_probs).astype(np.float64)
    spec = json.load(open(a.spec))
    table = poisson_table(np.array(spec["means"], dtype=np.float64), spec["max_length"])
    transcript = spec["transcript"]
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        score, labels = align(lp, transcript, table)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": float(np.median(times)), "score": score, "labels": labels.tolist()}))


if __name__ == "__main__":
    main()
