"""Frozen-feature evaluation of encoders: weighted kNN and the linear probe.

The official ReLA code (arXiv:2405.14669) reports a linear probe on frozen backbone features:
deterministic resize/centre-crop, ImageNet normalisation, one ``Linear`` layer trained with Adam
(lr 3e-4) for 100 epochs, and the figure is the mean ± std of the test accuracy over the last 3
epochs. The weighted kNN classifier of InstDisc (Wu et al. 2018, arXiv:1805.01978: cosine
similarity, k=200, votes weighted by ``exp(sim / 0.1)``) is the usual companion, used by BYOL
(arXiv:2006.07733) reproductions such as lightly and solo-learn.

Everything is computed in torch, so it works offline. The ``evaluate`` library's ``accuracy``
module is a Hub download (``evaluate.load("accuracy")``), so :func:`evaluate_accuracy` treats it
as optional and returns ``None`` when it cannot be loaded.

Features are extracted once (:func:`extract_features`, correct under Accelerate with any number of
processes through ``gather_for_metrics``) and both protocols run on the gathered tensors.

Examples:
    >>> model = load_encoder("org/rela-byol-resnet18-cifar10")             # doctest: +SKIP
    >>> transform = eval_transform_for(encoder_data_config(model))         # doctest: +SKIP
    >>> train_x, train_y = extract_features(model, train_ds, transform)    # doctest: +SKIP
    >>> test_x, test_y = extract_features(model, test_ds, transform)       # doctest: +SKIP
    >>> knn_accuracy(train_x, train_y, test_x, test_y)                     # doctest: +SKIP
    >>> linear_probe(train_x, train_y, test_x, test_y)["accuracy"]         # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

__all__ = [
    "EVAL_RESULTS_NAME",
    "KNN_K",
    "KNN_TEMPERATURE",
    "LINEAR_PROBE_EPOCHS",
    "LINEAR_PROBE_LR",
    "PROTOCOLS",
    "encoder_data_config",
    "eval_transform_for",
    "evaluate_accuracy",
    "evaluate_encoder",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "load_encoder",
    "read_eval_results",
    "write_eval_results",
]

# The protocol constants (official ReLA code; InstDisc's kNN).
KNN_K = 200
KNN_TEMPERATURE = 0.1
LINEAR_PROBE_EPOCHS = 100
LINEAR_PROBE_LR = 3e-4
LINEAR_PROBE_BATCH_SIZE = 256
LINEAR_PROBE_LAST_EPOCHS = 3  # the reported figure averages the test accuracy of these epochs
EVAL_RESULTS_NAME = "eval_results.json"
EVAL_RESULTS_FORMAT_VERSION = 1
# Elements of one similarity block in the chunked kNN (~64 MiB of float32).
_KNN_BLOCK_ELEMENTS = 1 << 24

_TIMM_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


# ---------------------------------------------------------------------------------------------
# loading an encoder and its preprocessing
# ---------------------------------------------------------------------------------------------
def load_encoder(encoder: str | os.PathLike | nn.Module, *, revision: str | None = None) -> nn.Module:
    """A frozen-feature encoder from a Hub id, a local timm-format folder or a module.

    Args:
        encoder: an ``nn.Module`` (returned as is); a folder written by
            :func:`rela_hf.hub.export_backbone` (``config.json`` + ``model.safetensors``) or a
            training run's ``output_dir`` holding one in ``backbone/``; a
            Hub repo id ``"org/name"`` in timm format; or an explicit timm name
            ``"hf-hub:org/name"`` / ``"local-dir:/path"``.
        revision: branch, tag or commit of a Hub repo (timm's ``@revision`` suffix).

    Returns:
        The model in eval mode, its classifier removed (``num_classes=0``), on CPU.
    """
    import timm

    import rela_hf.backbones  # noqa: F401  registers rela-hf's timm architectures (*_cifar ResNets)

    if isinstance(encoder, nn.Module):
        return encoder
    name = os.fspath(encoder)
    if name.startswith(_TIMM_PREFIXES):
        timm_name = name
    elif Path(name).is_dir():
        folder = Path(name)
        if not (folder / "config.json").is_file() and (folder / "backbone" / "config.json").is_file():
            folder = folder / "backbone"  # a training run's output_dir: its exported backbone
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{name} is a folder without config.json, so it is not a timm-format export "
                "(nor a training run's output_dir with a backbone/ export); write one with "
                "rela_hf.hub.export_backbone."
            )
        timm_name = f"local-dir:{folder.resolve()}"
    elif name.count("/") == 1 and not Path(name).exists():
        timm_name = f"hf-hub:{name}"
    else:
        raise ValueError(
            f"Cannot tell what encoder {name!r} is: expected a Hub repo id 'org/name', a local "
            "timm-format folder, or 'hf-hub:...'/'local-dir:...'."
        )
    if revision is not None:
        if not timm_name.startswith(("hf-hub:", "hf_hub:")):
            raise ValueError(f"revision={revision!r} only applies to Hub encoders, not {name!r}.")
        if "@" in timm_name:
            raise ValueError(f"{name!r} already names a revision; do not pass revision= too.")
        timm_name = f"{timm_name}@{revision}"
    model = timm.create_model(timm_name, pretrained=True, num_classes=0)
    return model.eval()


def encoder_data_config(
    model: nn.Module,
    *,
    preprocessing: str = "encoder",
    image_size: int | None = None,
) -> dict[str, Any]:
    """The deterministic evaluation preprocessing of an encoder, as a timm data config.

    Args:
        model: the encoder; a timm model's ``pretrained_cfg`` gives its own preprocessing.
        preprocessing: ``"encoder"`` (default): the encoder's own ``pretrained_cfg`` (input
            size, interpolation, crop, mean/std), which for a rela-hf export is the training
            preprocessing; ``"official"``: the official ReLA evaluation: shorter side resized to
            ``image_size``, centre crop, ImageNet mean/std.
        image_size: override the input size (required for ``"official"`` with a non-timm
            module).
    """
    from rela_hf.constants import IMAGENET_MEAN, IMAGENET_STD

    cfg = getattr(model, "pretrained_cfg", None) or {}
    if preprocessing == "official":
        size = image_size or (cfg.get("input_size") or (None, None, None))[-1]
        if size is None:
            raise ValueError("preprocessing='official' needs image_size= for a non-timm encoder.")
        return {
            "input_size": (3, int(size), int(size)),
            "interpolation": "bilinear",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "crop_pct": 1.0,
            "crop_mode": "center",
        }
    if preprocessing != "encoder":
        raise ValueError(f"preprocessing must be 'encoder' or 'official', got {preprocessing!r}.")
    if not cfg:
        raise ValueError(
            f"{type(model).__name__} has no timm pretrained_cfg to take its preprocessing from; "
            "use preprocessing='official' with image_size=, or pass your own transform."
        )
    from timm.data import resolve_data_config

    config = resolve_data_config(model=model)
    if image_size is not None:
        config["input_size"] = (config["input_size"][0], int(image_size), int(image_size))
    return config


def eval_transform_for(data_config: Mapping[str, Any]) -> Callable[[Any], Tensor]:
    """PIL image (any mode) -> normalised tensor, following a timm data config.

    Grey or RGBA images (Fashion-MNIST, PNGs with alpha) are converted to the encoder's
    channel count first, so one transform serves every dataset.
    """
    from timm.data import create_transform
    from torchvision import transforms as T

    in_chans = int(data_config["input_size"][0])
    mode = "RGB" if in_chans == 3 else "L"
    timm_transform = create_transform(**data_config, is_training=False)
    return T.Compose([T.Lambda(lambda image: image.convert(mode)), timm_transform])


# ---------------------------------------------------------------------------------------------
# feature extraction
# ---------------------------------------------------------------------------------------------
class _TransformedImages(Dataset):
    """Index a (Hugging Face or list-of-dicts) dataset into ``(pixels, label)`` pairs."""

    def __init__(self, dataset: Any, transform: Callable, image_column: str, label_column: str):
        self.dataset, self.transform = dataset, transform
        self.image_column, self.label_column = image_column, label_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        row = self.dataset[index]
        return self.transform(row[self.image_column]), int(row[self.label_column])


def _check_columns(dataset: Any, image_column: str, label_column: str) -> None:
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return
    missing = [c for c in (image_column, label_column) if c not in columns]
    if missing:
        raise KeyError(
            f"The dataset has no column(s) {missing} (it has {columns}); pass "
            "image_column=/label_column= to name the image and label columns."
        )


def _pooled_features(output: Any) -> Tensor:
    """The pooled ``(B, D)`` features of a timm backbone or a transformers model output."""
    if isinstance(output, Tensor):
        features = output
    elif getattr(output, "pooler_output", None) is not None:
        features = output.pooler_output
    else:
        raise TypeError(
            f"The encoder returned {type(output).__name__}; expected pooled features (a tensor, "
            "as a timm backbone with num_classes=0 gives, or an output with pooler_output)."
        )
    if features.ndim != 2:
        raise ValueError(
            f"The encoder returned features of shape {tuple(features.shape)}; expected (batch, "
            "dim). Create it with num_classes=0 and global pooling (a timm backbone)."
        )
    return features


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: Any,
    transform: Callable[[Any], Tensor],
    *,
    batch_size: int = 256,
    accelerator: Accelerator | None = None,
    image_column: str = "image",
    label_column: str = "label",
    num_workers: int = 0,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Frozen features and labels of a whole dataset, in dataset order.

    The model runs in eval mode without gradients (its train/eval mode is restored after).
    Under Accelerate each process embeds its shard of the batches and the results are gathered
    with ``accelerator.gather_for_metrics``, which drops the samples repeated to even out the
    last batch, so every process returns exactly ``len(dataset)`` rows, in the same order as a
    single process would. (The loader is prepared with ``accelerate``'s
    ``prepare_data_loader`` rather than ``accelerator.prepare``, so evaluation loaders never
    join the training state saved by ``accelerator.save_state``.)

    Args:
        model: the encoder (a timm backbone or anything returning pooled ``(B, D)`` features
            or an output with ``pooler_output``); a DDP-wrapped model is unwrapped.
        dataset: a map-style dataset of rows with an image and an integer label.
        transform: PIL image -> tensor (e.g. :func:`eval_transform_for`).
        batch_size: images per forward pass, per process.
        accelerator: gathers across processes; ``None`` for a single process.
        image_column, label_column: the columns holding the image and the label.
        num_workers: DataLoader workers.
        device: where to run the model without an accelerator (default: its parameters' device).

    Returns:
        ``(features, labels)``: float32 ``(N, D)`` and int64 ``(N,)`` tensors on CPU.
    """
    _check_columns(dataset, image_column, label_column)
    if len(dataset) == 0:
        raise ValueError("extract_features got an empty dataset.")
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
        device = accelerator.device
    elif device is None:
        device = next(model.parameters()).device
    model.to(device)
    loader: Any = DataLoader(
        _TransformedImages(dataset, transform, image_column, label_column),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )
    if accelerator is not None:
        from accelerate.data_loader import prepare_data_loader

        loader = prepare_data_loader(
            loader,
            accelerator.device,
            num_processes=accelerator.num_processes,
            process_index=accelerator.process_index,
            put_on_device=True,
            even_batches=True,
        )
    was_training = model.training
    model.eval()
    all_features, all_labels = [], []
    try:
        for pixels, labels in loader:
            pixels, labels = pixels.to(device), labels.to(device)
            features = _pooled_features(model(pixels)).float()
            if accelerator is not None:
                features, labels = accelerator.gather_for_metrics((features, labels))
            all_features.append(features.cpu())
            all_labels.append(labels.cpu())
    finally:
        model.train(was_training)
    return torch.cat(all_features), torch.cat(all_labels).long()


# ---------------------------------------------------------------------------------------------
# kNN (InstDisc protocol)
# ---------------------------------------------------------------------------------------------
def _check_split(features: Tensor, labels: Tensor, name: str) -> None:
    if features.ndim != 2:
        raise ValueError(f"{name}_features must be (N, D), got shape {tuple(features.shape)}.")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"{name}_labels must be (N,) with N={features.shape[0]} ({name}_features rows), "
            f"got shape {tuple(labels.shape)}."
        )
    if features.shape[0] == 0:
        raise ValueError(f"{name}_features is empty.")
    if labels.dtype.is_floating_point:
        raise TypeError(f"{name}_labels must be integer class indices, got {labels.dtype}.")


def _num_classes(num_classes: int | None, *labels: Tensor) -> int:
    needed = int(max(int(label.max()) for label in labels)) + 1
    if int(min(int(label.min()) for label in labels)) < 0:
        raise ValueError("Labels must be non-negative class indices.")
    if num_classes is None:
        return needed
    if num_classes < needed:
        raise ValueError(f"num_classes={num_classes} but the labels go up to {needed - 1}.")
    return num_classes


@torch.no_grad()
def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Weighted kNN predictions (InstDisc, arXiv:1805.01978) for each test feature.

    Features are L2-normalised; each test sample takes its ``k`` most cosine-similar training
    samples, each votes for its class with weight ``exp(similarity / temperature)``, and the
    class with the largest total wins. Test samples are processed in chunks so the similarity
    matrix never exceeds about 64 MiB (or ``chunk_size`` rows).

    Returns:
        int64 predictions ``(N_test,)`` on the features' device.
    """
    _check_split(train_features, train_labels, "train")
    if test_features.ndim != 2 or test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features must be (N, {train_features.shape[1]}) like train_features, got "
            f"{tuple(test_features.shape)}."
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    num_classes = _num_classes(num_classes, train_labels)
    device = train_features.device
    train = nn.functional.normalize(train_features.float(), dim=1)
    test = nn.functional.normalize(test_features.float().to(device), dim=1)
    train_labels = train_labels.to(device).long()
    k = min(k, train.shape[0])
    rows = chunk_size or max(1, _KNN_BLOCK_ELEMENTS // train.shape[0])
    predictions = []
    for start in range(0, test.shape[0], rows):
        similarity = test[start : start + rows] @ train.T  # (rows, N_train)
        top_similarity, top_index = similarity.topk(k, dim=1)
        weights = (top_similarity / temperature).exp()
        votes = torch.zeros(top_index.shape[0], num_classes, device=device)
        votes.scatter_add_(1, train_labels[top_index], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of the weighted kNN classifier of :func:`knn_predict`.

    Args:
        train_features, train_labels: the memory bank, ``(N, D)`` and ``(N,)``.
        test_features, test_labels: the queries, ``(M, D)`` and ``(M,)``.
        k: neighbours per query (200 in the protocol; capped at ``N``).
        temperature: vote weight ``exp(cos / temperature)`` (0.1 in the protocol).
        num_classes: default ``max(label) + 1``.
        chunk_size: queries per similarity block (default: about 64 MiB per block).

    Examples:
        >>> bank = torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0]])
        >>> bank_labels = torch.tensor([0, 0, 1])
        >>> queries, query_labels = torch.tensor([[2.0, 0.1], [0.1, 3.0]]), torch.tensor([0, 1])
        >>> knn_accuracy(bank, bank_labels, queries, query_labels, k=1)
        1.0
    """
    _check_split(test_features, test_labels, "test")
    num_classes = _num_classes(num_classes, train_labels, test_labels)
    predictions = knn_predict(
        train_features, train_labels, test_features,
        k=k, temperature=temperature, num_classes=num_classes, chunk_size=chunk_size,
    )
    return (predictions.cpu() == test_labels.cpu().long()).float().mean().item()


# ---------------------------------------------------------------------------------------------
# linear probe (official ReLA protocol)
# ---------------------------------------------------------------------------------------------
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
    _check_split(train_features, train_labels, "train")
    _check_split(test_features, test_labels, "test")
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"train and test features differ in width ({train_features.shape[1]} vs "
            f"{test_features.shape[1]})."
        )
    if epochs < 1 or not 1 <= last_epochs <= epochs:
        raise ValueError(f"Need epochs >= 1 and 1 <= last_epochs <= epochs, got {epochs}, {last_epochs}.")
    num_classes = _num_classes(num_classes, train_labels, test_labels)
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


# ---------------------------------------------------------------------------------------------
# the `evaluate` library (optional) and the results file
# ---------------------------------------------------------------------------------------------
def evaluate_accuracy(
    predictions: Tensor | Sequence[int],
    references: Tensor | Sequence[int],
    *,
    metric_path: str = "accuracy",
) -> float | None:
    """Accuracy through the ``evaluate`` library, or ``None`` when its module is unavailable.

    ``evaluate.load("accuracy")`` downloads the module ``evaluate-metric/accuracy`` from the Hub
    on first use, which machines without Hub access can never do; it is therefore a cross-check
    only (the torch figures are the reference). ``metric_path`` may name a local copy of the
    module (a folder or ``accuracy.py``) for offline machines.
    """
    try:
        import evaluate

        metric = evaluate.load(metric_path)
        result = metric.compute(predictions=list(map(int, predictions)), references=list(map(int, references)))
    except Exception as error:  # noqa: BLE001 - any failure just means "not available here"
        logger.warning("evaluate's %r metric is unavailable (%s); using the torch figure only.",
                       metric_path, type(error).__name__)
        return None
    return float(result["accuracy"])


def write_eval_results(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write an eval-results dict as JSON, atomically (temp file then rename).

    The format (``format_version`` 1), read by :func:`rela_hf.hub.render_model_card`::

        {"format_version": 1, "encoder": ..., "encoder_revision": ...,
         "dataset": {"id", "name", "revision", "config", "train_split", "split",
                     "num_train_samples", "num_samples"},
         "preprocessing": {<timm data config>},
         "results": [{"protocol": "knn" | "linear_probe", "metric": "accuracy",
                      "value": <fraction>, "std": <fraction or null>, "args": {...},
                      "evaluate_value": <fraction or null>}, ...]}
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(results), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_eval_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an ``eval_results.json`` written by :func:`write_eval_results`."""
    path = Path(path)
    results = json.loads(path.read_text())
    for key in ("dataset", "results"):
        if key not in results:
            raise ValueError(f"{path} is not an eval_results.json of rela-hf: no {key!r} key.")
    for entry in results["results"]:
        missing = {"protocol", "metric", "value"} - set(entry)
        if missing:
            raise ValueError(f"{path}: a result lacks {sorted(missing)}: {entry}.")
        if not (isinstance(entry["value"], (int, float)) and math.isfinite(entry["value"])):
            raise ValueError(f"{path}: result value {entry['value']!r} is not a finite number.")
    return results


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    return value


# ---------------------------------------------------------------------------------------------
# the whole protocol
# ---------------------------------------------------------------------------------------------
PROTOCOLS = ("knn", "linear_probe")


def evaluate_encoder(
    encoder: str | os.PathLike | nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    *,
    dataset: Mapping[str, Any] | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    revision: str | None = None,
    transform: Callable[[Any], Tensor] | None = None,
    preprocessing: str = "encoder",
    image_size: int | None = None,
    batch_size: int = 256,
    accelerator: Accelerator | None = None,
    image_column: str = "image",
    label_column: str = "label",
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    epochs: int = LINEAR_PROBE_EPOCHS,
    lr: float = LINEAR_PROBE_LR,
    probe_batch_size: int = LINEAR_PROBE_BATCH_SIZE,
    seed: int = 0,
    num_classes: int | None = None,
    use_evaluate: bool = False,
) -> dict[str, Any]:
    """Evaluate an encoder on frozen features with kNN and/or the linear probe.

    Features of both splits are extracted once (distributed-correct under ``accelerator``),
    then each protocol runs on every process on the same gathered tensors (cheap and
    deterministic, so all processes agree; write the results from the main process only).

    Args:
        encoder: a Hub id, a local timm-format folder or a module (see :func:`load_encoder`).
        train_dataset, test_dataset: labelled image datasets (kNN memory bank / probe
            training set, and the evaluation set).
        dataset: what to record about the data: ``id``, ``name``, ``revision``, ``config``,
            ``train_split``, ``split`` (test split name).
        protocols: any of ``"knn"``, ``"linear_probe"``.
        transform: PIL -> tensor; default from ``preprocessing``/``image_size`` through
            :func:`encoder_data_config`.
        use_evaluate: also compute the accuracy with ``evaluate`` (online machines; ``None``
            is recorded when its module cannot be loaded).
        Other arguments: the protocol settings (defaults: the official ones).

    Returns:
        The eval-results dict of :func:`write_eval_results`.
    """
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {list(protocols)}.")
    model = load_encoder(encoder, revision=revision)
    data_config: dict[str, Any] | None = None
    if transform is None:
        data_config = encoder_data_config(model, preprocessing=preprocessing, image_size=image_size)
        transform = eval_transform_for(data_config)

    def features_of(split: Any) -> tuple[Tensor, Tensor]:
        return extract_features(model, split, transform, batch_size=batch_size,
                                accelerator=accelerator, image_column=image_column,
                                label_column=label_column)

    train_x, train_y = features_of(train_dataset)
    test_x, test_y = features_of(test_dataset)
    num_classes = _num_classes(num_classes, train_y, test_y)

    results: list[dict[str, Any]] = []
    if "knn" in protocols:
        predictions = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature,
                                  num_classes=num_classes)
        results.append({
            "protocol": "knn",
            "metric": "accuracy",
            "value": (predictions == test_y).float().mean().item(),
            "std": None,
            "args": {"k": k, "temperature": temperature, "similarity": "cosine",
                     "weighting": "exp(sim/temperature)"},
            "evaluate_value": evaluate_accuracy(predictions, test_y) if use_evaluate else None,
        })
    if "linear_probe" in protocols:
        probe = linear_probe(train_x, train_y, test_x, test_y, epochs=epochs, lr=lr,
                             batch_size=probe_batch_size, seed=seed, num_classes=num_classes)
        results.append({
            "protocol": "linear_probe",
            "metric": "accuracy",
            "value": probe["accuracy"],
            "std": probe["accuracy_std"],
            "args": {"epochs": epochs, "lr": lr, "optimizer": "Adam", "batch_size": probe_batch_size,
                     "seed": seed, "averaged_last_epochs": probe["last_epochs"]},
            "last_accuracies": probe["last_accuracies"],
            "final_train_accuracy": probe["final_train_accuracy"],
            "evaluate_value": (evaluate_accuracy(probe["predictions"], test_y)
                               if use_evaluate else None),
        })
    dataset = dict(dataset or {})
    encoder_name = None if isinstance(encoder, nn.Module) else os.fspath(encoder)
    return {
        "format_version": EVAL_RESULTS_FORMAT_VERSION,
        "encoder": encoder_name,
        "encoder_revision": revision,
        "architecture": (getattr(model, "pretrained_cfg", None) or {}).get("architecture"),
        "feature_dim": int(train_x.shape[1]),
        "dataset": {
            "id": dataset.get("id"),
            "name": dataset.get("name") or dataset.get("id"),
            "revision": dataset.get("revision"),
            "config": dataset.get("config"),
            "train_split": dataset.get("train_split", "train"),
            "split": dataset.get("split", "test"),
            "num_train_samples": int(train_x.shape[0]),
            "num_samples": int(test_x.shape[0]),
            "num_classes": num_classes,
        },
        "preprocessing": data_config,
        "results": results,
    }
