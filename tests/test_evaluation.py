"""Tests for rela_hf.evaluation: feature extraction, weighted kNN, linear probe, results file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch

from rela_hf.evaluation import (
    encoder_data_config,
    eval_transform_for,
    evaluate_accuracy,
    evaluate_encoder,
    extract_features,
    knn_accuracy,
    knn_predict,
    linear_probe,
    load_encoder,
    read_eval_results,
    write_eval_results,
)
from rela_hf.hub import export_backbone, training_data_config

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matmuls gain nothing from a second thread, and on shared cores OpenMP spins badly
    (a 100-epoch probe of 500 x 1280 features: ~1.7 s on one thread, ~16 s on two, loaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=0).eval()
    return model


# ---- kNN ------------------------------------------------------------------------------------------


def _brute_force_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """The InstDisc rule written out one query at a time, as plainly as possible."""
    predictions = []
    for query in test_x:
        similarities = [
            torch.dot(query / query.norm(), row / row.norm()).item() for row in train_x
        ]
        nearest = sorted(range(len(train_x)), key=lambda i: -similarities[i])[:k]
        votes = [0.0] * num_classes
        for i in nearest:
            votes[int(train_y[i])] += float(torch.exp(torch.tensor(similarities[i] / temperature)))
        predictions.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(predictions)


@pytest.mark.parametrize(
    ("k", "temperature", "chunk_size"),
    [(1, 0.1, None), (5, 0.1, 3), (20, 0.5, 7), (200, 0.1, None)],  # k=200 > 40: capped at N
)
def test_knn_matches_brute_force_reference(k, temperature, chunk_size):
    # Random features are fine here: the test is about the voting arithmetic, not content.
    generator = torch.Generator().manual_seed(k)
    train_x, test_x = torch.randn(40, 8, generator=generator), torch.randn(23, 8, generator=generator)
    train_y = torch.randint(0, 4, (40,), generator=generator)
    test_y = torch.randint(0, 4, (23,), generator=generator)
    expected = _brute_force_knn(train_x, train_y, test_x, min(k, 40), temperature, 4)
    got = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, chunk_size=chunk_size)
    assert torch.equal(got, expected)
    accuracy = knn_accuracy(train_x, train_y, test_x, test_y, k=k, temperature=temperature,
                            chunk_size=chunk_size)
    assert accuracy == pytest.approx((expected == test_y).float().mean().item())


def test_knn_is_scale_invariant_and_counts_classes_without_test_samples():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    train_y = torch.tensor([0, 0, 5, 5])
    test_x = torch.tensor([[10.0, 1.0], [0.2, 3.0]])  # norms differ: cosine ignores them
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([0, 5]), k=2) == 1.0


def test_knn_rejects_bad_inputs():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        knn_predict(x, y, torch.randn(2, 5))
    with pytest.raises(ValueError, match="train_labels"):
        knn_predict(x, y[:3], x)
    with pytest.raises(TypeError, match="integer class indices"):
        knn_predict(x, y.float(), x)
    with pytest.raises(ValueError, match="num_classes=1"):
        knn_accuracy(x, y, x, y, num_classes=1)


# ---- linear probe -----------------------------------------------------------------------------------


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    return centres[labels] + torch.randn(n, 4, generator=generator), labels


def test_linear_probe_reports_mean_and_std_of_last_three_epochs():
    train_x, train_y = _blobs(120, 0)
    test_x, test_y = _blobs(60, 1)
    result = linear_probe(train_x, train_y, test_x, test_y, epochs=30, lr=1e-2, batch_size=32)
    last = result["last_accuracies"]
    assert len(last) == 3
    assert result["accuracy"] == pytest.approx(sum(last) / 3)
    mean = sum(last) / 3
    assert result["accuracy_std"] == pytest.approx((sum((a - mean) ** 2 for a in last) / 3) ** 0.5)
    assert result["accuracy"] > 0.9  # well-separated blobs
    assert result["predictions"].shape == (60,)
    assert (result["epochs"], result["lr"], result["batch_size"]) == (30, 1e-2, 32)


def test_linear_probe_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    train_x, train_y = _blobs(90, 2)
    test_x, test_y = _blobs(45, 3)
    state = torch.get_rng_state()
    first = linear_probe(train_x, train_y, test_x, test_y, epochs=5, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    second = linear_probe(train_x, train_y, test_x, test_y, epochs=5, seed=7)
    other = linear_probe(train_x, train_y, test_x, test_y, epochs=5, seed=8)
    assert first["last_accuracies"] == second["last_accuracies"]
    assert torch.equal(first["predictions"], second["predictions"])
    assert first["final_train_accuracy"] == second["final_train_accuracy"]
    assert other["seed"] == 8


def test_linear_probe_defaults_are_the_official_protocol():
    import inspect

    defaults = inspect.signature(linear_probe).parameters
    assert defaults["epochs"].default == 100
    assert defaults["lr"].default == 3e-4
    assert defaults["last_epochs"].default == 3
    knn_defaults = inspect.signature(knn_accuracy).parameters
    assert (knn_defaults["k"].default, knn_defaults["temperature"].default) == (200, 0.1)


# ---- feature extraction --------------------------------------------------------------------------------


def test_extract_features_matches_a_direct_forward_on_real_images(tiny_encoder, cifar10_images):
    transform = eval_transform_for(training_data_config(32))
    tiny_encoder.train()  # extraction must switch to eval and restore the mode afterwards
    features, labels = extract_features(tiny_encoder, cifar10_images, transform, batch_size=6)
    assert tiny_encoder.training
    tiny_encoder.eval()
    assert features.shape == (20, 96) and features.dtype == torch.float32
    assert labels.tolist() == cifar10_images["label"]
    pixels = torch.stack([transform(image) for image in cifar10_images["image"]])
    with torch.no_grad():
        assert torch.allclose(features, tiny_encoder(pixels), atol=1e-6)


def test_extract_features_converts_grey_images_and_checks_columns(tiny_encoder, fashion_mnist_slice):
    transform = eval_transform_for(training_data_config(32))
    features, labels = extract_features(tiny_encoder, fashion_mnist_slice.select(range(8)),
                                        transform, batch_size=4)
    assert features.shape == (8, 96) and labels.shape == (8,)
    with pytest.raises(KeyError, match="label_column"):
        extract_features(tiny_encoder, fashion_mnist_slice, transform, label_column="target")


GATHER_SCRIPT = textwrap.dedent(
    """
    import sys, timm, torch
    from accelerate import Accelerator
    from rela_hf.assets import foolbox_dataset
    from rela_hf.evaluation import eval_transform_for, extract_features
    from rela_hf.hub import training_data_config

    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2, accelerator.state
    model = timm.create_model(f"local-dir:{sys.argv[1]}", pretrained=True).eval()
    dataset = foolbox_dataset("cifar10")
    transform = eval_transform_for(training_data_config(32))
    # 20 images, batch 3 per process, 2 processes: 7 batches, the last one padded by accelerate
    features, labels = extract_features(model, dataset, transform, batch_size=3,
                                        accelerator=accelerator)
    torch.save({"features": features, "labels": labels},
               f"{sys.argv[2]}/rank{accelerator.process_index}.pt")
    """
)


@pytest.mark.slow
def test_extract_features_gathers_exactly_once_per_sample_across_two_processes(
    tiny_encoder, cifar10_images, tmp_path
):
    folder = export_backbone(tiny_encoder, tmp_path / "encoder")
    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    # torchrun sets the env Accelerate reads (MULTI_CPU over gloo); `accelerate launch --cpu`
    # would need an MPI hostfile for several CPU processes.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", str(script), str(folder), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    transform = eval_transform_for(training_data_config(32))
    expected, expected_labels = extract_features(tiny_encoder, cifar10_images, transform)
    for rank in (0, 1):
        gathered = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert gathered["features"].shape == (20, 96)  # no duplicated padding samples
        assert torch.equal(gathered["labels"], expected_labels)  # and in dataset order
        assert torch.allclose(gathered["features"], expected, atol=1e-5)


# ---- loading encoders ------------------------------------------------------------------------------------


def test_load_encoder_from_local_export_and_errors(tiny_encoder, tmp_path):
    folder = export_backbone(tiny_encoder, tmp_path / "enc", data_config=training_data_config(32))
    x = torch.randn(2, 3, 32, 32)
    for name in (folder, str(folder), f"local-dir:{folder}"):
        model = load_encoder(name)
        with torch.no_grad():
            assert torch.equal(model(x), tiny_encoder(x))
    assert load_encoder(tiny_encoder) is tiny_encoder
    assert encoder_data_config(load_encoder(folder))["input_size"] == (3, 32, 32)
    official = encoder_data_config(tiny_encoder, preprocessing="official", image_size=48)
    assert official["input_size"] == (3, 48, 48) and official["crop_pct"] == 1.0
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_encoder(tmp_path / "empty")
    with pytest.raises(ValueError, match="Cannot tell"):
        load_encoder("not-a-repo-or-folder")
    with pytest.raises(ValueError, match="only applies to Hub"):
        load_encoder(folder, revision="main")


# ---- the evaluate library (offline, through a local metric module) -------------------------------------

LOCAL_ACCURACY_MODULE = textwrap.dedent(
    """
    import datasets
    import evaluate


    class LocalAccuracy(evaluate.Metric):
        def _info(self):
            return evaluate.MetricInfo(
                description="top-1 accuracy", citation="", inputs_description="",
                features=datasets.Features({"predictions": datasets.Value("int64"),
                                            "references": datasets.Value("int64")}),
            )

        def _compute(self, predictions, references):
            correct = sum(int(p == r) for p, r in zip(predictions, references))
            return {"accuracy": correct / len(references)}
    """
)


def test_evaluate_accuracy_through_a_local_module_and_none_when_missing(tmp_path):
    module_dir = tmp_path / "local_accuracy"
    module_dir.mkdir()
    (module_dir / "local_accuracy.py").write_text(LOCAL_ACCURACY_MODULE)
    predictions, references = torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])
    assert evaluate_accuracy(predictions, references, metric_path=str(module_dir)) == 0.75
    assert evaluate_accuracy(predictions, references, metric_path=str(tmp_path / "missing")) is None


# ---- the whole protocol and the results file -------------------------------------------------------------


def test_evaluate_encoder_writes_and_reads_eval_results(tiny_encoder, cifar10_images, tmp_path):
    folder = export_backbone(tiny_encoder, tmp_path / "enc", data_config=training_data_config(32))
    train, test = cifar10_images.select(range(12)), cifar10_images.select(range(12, 20))
    results = evaluate_encoder(
        str(folder), train, test, epochs=4,
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


# ---- real numbers: a pretrained prior far above the same architecture untrained -------------------------


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
    transform = eval_transform_for(encoder_data_config(pretrained, image_size=32))
    train = fashion_mnist_dataset("train", limit=500, seed=0)
    test = fashion_mnist_dataset("test", limit=200, seed=0)
    features = {}
    for name, model in (("pretrained", pretrained), ("random", random_init)):
        features[name] = (*extract_features(model, train, transform, batch_size=100),
                          *extract_features(model, test, transform, batch_size=100))
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


# ---- the recipe -----------------------------------------------------------------------------------------


def _load_recipe(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_evaluate_encoder_recipe_writes_results_next_to_a_training_run(
    tiny_encoder, tmp_path, capsys, _fresh_accelerate_state
):
    run = tmp_path / "run"
    export_backbone(tiny_encoder, run / "backbone", data_config=training_data_config(32))
    (run / "training_summary.json").write_text("{}")
    recipe = _load_recipe("evaluate_encoder")
    results = recipe.main([
        "--encoder", str(run / "backbone"), "--dataset", "offline:fashion_mnist",
        "--max_train_samples", "40", "--max_test_samples", "20", "--epochs", "3",
        "--batch_size", "20",
    ])
    written = read_eval_results(run / "eval_results.json")
    assert written == json.loads(json.dumps(results))
    assert written["dataset"]["num_train_samples"] == 40 and written["dataset"]["num_samples"] == 20
    assert written["dataset"]["name"].startswith("Fashion-MNIST")
    assert [r["protocol"] for r in written["results"]] == ["knn", "linear_probe"]
    out = capsys.readouterr().out
    assert "knn" in out and "linear_probe" in out and "eval_results.json" in out
    # the export folder itself stays an export (config.json + model.safetensors only)
    assert sorted(p.name for p in (run / "backbone").iterdir()) == ["config.json", "model.safetensors"]


def test_docstring_examples_run():
    import doctest

    import rela_hf.evaluation

    result = doctest.testmod(rela_hf.evaluation, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
