"""A small numpy classifier (softmax regression, or one hidden layer) and its training loop."""

import numpy as np


def make_data(rng, samples, features, classes, noise):
    centers = rng.normal(size=(classes, features)) * 2.0
    labels = rng.integers(0, classes, size=samples)
    inputs = centers[labels] + rng.normal(scale=noise, size=(samples, features))
    return inputs, labels


def train(cfg, log):
    """Train on synthetic data; ``log(metrics, step)`` receives loss and accuracy each epoch."""
    rng = np.random.default_rng(cfg.seed)
    x, y = make_data(rng, cfg.data.samples, cfg.data.features, cfg.data.classes, cfg.data.noise)
    sizes = [cfg.data.features, *([cfg.model.hidden] if cfg.model.hidden else []), cfg.data.classes]
    weights = [rng.normal(scale=1 / np.sqrt(a), size=(a, b)) for a, b in zip(sizes, sizes[1:])]
    velocity = [np.zeros_like(w) for w in weights]
    onehot = np.eye(cfg.data.classes)[y]
    for epoch in range(cfg.epochs):
        layers = [x]
        for w in weights[:-1]:
            layers.append(np.maximum(layers[-1] @ w, 0.0))
        logits = layers[-1] @ weights[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
        log({"loss": loss, "acc": float(np.mean(p.argmax(axis=1) == y))}, epoch)
        grad = (p - onehot) / len(y)
        for i in reversed(range(len(weights))):
            step = layers[i].T @ grad
            if i:
                grad = (grad @ weights[i].T) * (layers[i] > 0)
            velocity[i] = cfg.optimizer.momentum * velocity[i] - cfg.optimizer.lr * step
            weights[i] += velocity[i]
    return loss
