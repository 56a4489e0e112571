"""Tests for rela_hf.evaluation.run: the whole protocol, its results file, and real numbers
(a pretrained prior far above the same architecture untrained)."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from rela_hf.evaluation import (
    encoder_data_config,
    evaluate_encoder,
    extract_features,
    knn_accuracy,
    linear_probe,
    load_encoder,
    read_eval_results,
    write_eval_results,
)
from rela_hf.hub import export_backbone
from rela_hf.preprocessing import eval_transform, official_data_config


def test_evaluate_encoder_writes_and_reads_eval_results(tiny_encoder, cifar10_images, tmp_path):
    folder = export_backbone(tiny_encoder, tmp_path / "enc", data_config=official_data_config(32))
    train, test = cifar10_images.select(range(12)), cifar10_images.select(range(12, 20))
    results = evaluate_encoder(
        str(folder),
        train,
        test,
        epochs=4,
        dataset={"id": "foolbox/cifar10", "name": "CIFAR-10 (foolbox sample)", "revision": "3.3.4"},
    )
    path = write_eval_results(results, tmp_path / "eval_results.json")
    loaded = read_eval_results(path)
    assert loaded == json.loads(json.dumps(results))
    assert loaded["dataset"]["num_train_samples"] == 12 and loaded["dataset"]["num_samples"] == 8
    assert loaded["preprocessing"]["input_size"] == [3, 32, 32]
    by_protocol = {r["protocol"]: r for r in loaded["results"]}
    assert set(by_protocol) == {"knn", "linear_probe"}
    assert by_protocol["knn"]["args"]["k"] == 200 and by_protocol["knn"]["std"] is None
    assert len(by_protocol["linear_probe"]["last_accuracies"]) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    (tmp_path / "bad.json").write_text(json.dumps({"dataset": {}, "results": [{"protocol": "knn"}]}))
    with pytest.raises(ValueError, match="lacks"):
        read_eval_results(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="protocols"):
        evaluate_encoder(tiny_encoder, train, test, protocols=["svm"])


@pytest.fixture(scope="module")
def lite0_features(tmp_path_factory):
    """EfficientNet-Lite0 features (ImageNet weights vs random init) of 500/200 Fashion-MNIST images."""
    from rela_hf.assets import fashion_mnist_dataset
    from rela_hf.convert import convert_efficientnet_lite0

    folder = convert_efficientnet_lite0(tmp_path_factory.mktemp("prior") / "efficientnet_lite0")
    pretrained = load_encoder(folder)
    torch.manual_seed(0)
    random_init = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    # same preprocessing for both (the prior's TF-Lite normalisation), at 32 px to stay cheap
    transform = eval_transform(encoder_data_config(pretrained, image_size=32))
    train = fashion_mnist_dataset("train", limit=500, seed=0)
    test = fashion_mnist_dataset("test", limit=200, seed=0)
    features = {}
    for name, model in (("pretrained", pretrained), ("random", random_init)):
        features[name] = (
            *extract_features(model, train, transform, batch_size=100),
            *extract_features(model, test, transform, batch_size=100),
        )
    return features


@pytest.mark.slow
def test_pretrained_prior_beats_random_init_with_knn_and_linear_probe(lite0_features):
    scores = {}
    for name, (train_x, train_y, test_x, test_y) in lite0_features.items():
        scores[name] = (
            knn_accuracy(train_x, train_y, test_x, test_y),
            linear_probe(train_x, train_y, test_x, test_y)["accuracy"],
        )
    print(f"\nFashion-MNIST 500/200 @32px, EfficientNet-Lite0 (kNN, linear): {scores}")
    # measured: pretrained (0.66, 0.665), random (0.33, 0.433); chance is 0.1
    knn_pre, probe_pre = scores["pretrained"]
    knn_rand, probe_rand = scores["random"]
    assert knn_pre > knn_rand + 0.2
    assert probe_pre > probe_rand + 0.1
    assert knn_pre > 0.5 and probe_pre > 0.5
