"""The linear probe of the official ReLA code (arXiv:2405.14669) on frozen features.

One ``Linear`` layer, Adam (lr 3e-4, no weight decay), 100 epochs, cross-entropy; the reported
figure is the mean +- std of the test accuracy over the last 3 epochs.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import Tensor, nn

from rela_hf.evaluation.checks import check_split, num_classes_of

__all__ = [
    "LINEAR_PROBE_BATCH_SIZE",
    "LINEAR_PROBE_EPOCHS",
    "LINEAR_PROBE_LAST_EPOCHS",
    "LINEAR_PROBE_LR",
    "linear_probe",
]

LINEAR_PROBE_EPOCHS = 100
LINEAR_PROBE_LR = 3e-4
LINEAR_PROBE_BATCH_SIZE = 256
LINEAR_PROBE_LAST_EPOCHS = 3  # the reported figure averages the test accuracy of these epochs


@torch.no_grad()
def _accuracy(classifier: nn.Module, features: Tensor, labels: Tensor, batch_size: int) -> tuple[float, Tensor]:
    predictions = torch.cat(
        [classifier(features[i : i + batch_size]).argmax(1) for i in range(0, len(features), batch_size)]
    )
    return (predictions == labels).float().mean().item(), predictions


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    epochs: int = LINEAR_PROBE_EPOCHS,
    lr: float = LINEAR_PROBE_LR,
    batch_size: int = LINEAR_PROBE_BATCH_SIZE,
    seed: int = 0,
    num_classes: int | None = None,
    last_epochs: int = LINEAR_PROBE_LAST_EPOCHS,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train one ``Linear`` layer on frozen features: the official ReLA evaluation protocol.

    Adam (lr 3e-4, no weight decay), cross-entropy, ``epochs`` passes over the shuffled
    training features; after every epoch the test accuracy is measured. The reported figure is
    the mean ± (population) std of the test accuracy over the last ``last_epochs`` epochs.
    The features are used as given (no normalisation, as in the official code). Everything
    random (initialisation, shuffling) comes from ``seed`` on a private generator, so the
    result repeats exactly and the global RNG is untouched.

    Returns:
        A dict: ``accuracy`` (the mean, a fraction), ``accuracy_std``, ``last_accuracies``
        (the averaged epochs' test accuracies), ``final_train_accuracy``, ``predictions``
        (int64 test predictions of the last epoch) and the settings (``epochs``, ``lr``,
        ``batch_size``, ``seed``, ``num_classes``, ``last_epochs``).
    """
    check_split(train_features, train_labels, "train")
    check_split(test_features, test_labels, "test")
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"train and test features differ in width ({train_features.shape[1]} vs {test_features.shape[1]})."
        )
    if epochs < 1 or not 1 <= last_epochs <= epochs:
        raise ValueError(f"Need epochs >= 1 and 1 <= last_epochs <= epochs, got {epochs}, {last_epochs}.")
    num_classes = num_classes_of(num_classes, train_labels, test_labels)
    device = torch.device(device) if device is not None else train_features.device
    train_x, train_y = train_features.float().to(device), train_labels.long().to(device)
    test_x, test_y = test_features.float().to(device), test_labels.long().to(device)

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # nn.Linear's default init draws from the global CPU RNG
        classifier = nn.Linear(train_x.shape[1], num_classes)
    classifier.to(device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    test_accuracies: list[float] = []
    predictions = torch.empty(0, dtype=torch.long)
    for _ in range(epochs):
        classifier.train()
        order = torch.randperm(len(train_x), generator=generator).to(device)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = loss_fn(classifier(train_x[batch]), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        classifier.eval()
        accuracy, predictions = _accuracy(classifier, test_x, test_y, batch_size)
        test_accuracies.append(accuracy)
    last = test_accuracies[-last_epochs:]
    train_accuracy, _ = _accuracy(classifier, train_x, train_y, batch_size)
    return {
        "accuracy": statistics.fmean(last),
        "accuracy_std": statistics.pstdev(last),
        "last_accuracies": last,
        "final_train_accuracy": train_accuracy,
        "predictions": predictions.cpu(),
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "num_classes": num_classes,
        "last_epochs": last_epochs,
    }
