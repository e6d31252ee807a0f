#!/usr/bin/env python3
"""How much a synthetic segmentation dataset's frames say when only action sets label it: a plain
multiple-instance learner (three dilated convolutions, a smooth maximum of the frame logits over
time, binary cross entropy against each training video's set of labels, Adam at 1e-3) and the
accuracy of its frame argmax over the actions on the test videos' action frames (background
frames left out). docs/segmentation.md, "Synthetic data".

  /usr/bin/python3 bench/set_mil_baseline.py DATA [--epochs 60]

DATA is the output of `holo data synth --kind segmentation` (MS-TCN's layout)."""
import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(root, split, index):
    videos = [line.strip() for line in open(f"{root}/splits/{split}.split1.bundle") if line.strip()]
    out = []
    for v in videos:
        x = np.load(f"{root}/features/{v[:-4]}.npy").astype(np.float32)
        y = np.array([index[line.strip()] for line in open(f"{root}/groundTruth/{v}")])
        out.append((torch.tensor(x)[None], torch.tensor(y)))
    return out


def action_frame_accuracy(net, videos):
    correct = frames = 0
    with torch.no_grad():
        for x, y in videos:
            predicted = net(x)[0][1:].argmax(0) + 1  # class 0 is the background
            actions = y > 0
            correct += (predicted[actions] == y[actions]).sum().item()
            frames += actions.sum().item()
    return 100.0 * correct / frames


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    names = [line.split()[1] for line in open(args.data + "/mapping.txt")]
    index = {n: i for i, n in enumerate(names)}
    train, test = load(args.data, "train", index), load(args.data, "test", index)
    classes, dim = len(names), train[0][0].shape[1]
    net = nn.Sequential(nn.Conv1d(dim, 64, 1), nn.ReLU(), nn.Conv1d(64, 64, 3, padding=1), nn.ReLU(),
                        nn.Conv1d(64, 64, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv1d(64, classes, 1))
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(args.epochs):
        for i in torch.randperm(len(train)):
            x, y = train[i]
            logits = net(x)[0]
            target = torch.zeros(classes)
            target[y.unique()] = 1
            video = torch.logsumexp(4 * logits, 1) / 4  # a smooth maximum over time
            loss = F.binary_cross_entropy_with_logits(video, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    print("action frames labelled correctly: train %.1f%%, test %.1f%%"
          % (action_frame_accuracy(net, train), action_frame_accuracy(net, test)))


if __name__ == "__main__":
    main()
