"""Bad input to add_rela_targets: a clear error that names the problem, and nothing written."""

from __future__ import annotations

import io

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from rela_hf.targets import add_rela_targets, rela_targets_info, whiten_new_images


def png_bytes(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("num_proc", [None, 2])  # one worker, or two CPU worker threads
def test_undecodable_image_names_the_row_and_writes_nothing(random_prior, cifar10_images, tmp_path, num_proc):
    images = [{"bytes": png_bytes(image), "path": None} for image in cifar10_images["image"][:10]]
    images[5] = {"bytes": b"this is not an image", "path": None}
    broken = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    broken.save_to_disk(str(tmp_path / "broken"))
    before = sorted(path.name for path in (tmp_path / "broken").iterdir())
    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match="Could not decode the image of row 5"):
        add_rela_targets(
            datasets.load_from_disk(str(tmp_path / "broken")),
            random_prior,
            k=4,
            batch_size=4,
            num_proc=num_proc,
        )
    assert sorted(path.name for path in (tmp_path / "broken").iterdir()) == before
    assert torch.get_num_threads() == threads  # the workers' setting does not outlive them


def test_non_finite_embedding_names_the_row(random_prior, cifar10_images):
    def poison_second_batch(module, inputs, output, seen=[]):  # noqa: B006  (a call counter)
        seen.append(1)
        if len(seen) == 2:
            output = output.clone()
            output[2] = float("nan")
            return output

    hook = random_prior.model.global_pool.register_forward_hook(poison_second_batch)
    try:
        with pytest.raises(ValueError, match=r"non-finite embedding.*row 10"):
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
        ({"k": 4, "num_proc": -1}, ValueError, "num_proc must be None or a non-negative"),
    ],
)
def test_bad_arguments(random_prior, cifar10_images, kwargs, error, message):
    with pytest.raises(error, match=message):
        add_rela_targets(cifar10_images, random_prior, **kwargs)


def test_bad_datasets_and_priors(random_prior, cifar10_images):
    with pytest.raises(ValueError, match="empty"):
        add_rela_targets(cifar10_images.select([]), random_prior, k=4)
    with pytest.raises(TypeError, match=r"must be a rela_hf.priors.Prior"):
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


@pytest.mark.parametrize("k", [0, -3])
def test_k_must_be_positive(random_prior, cifar10_images, k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        add_rela_targets(cifar10_images, random_prior, k=k)


def test_one_row_is_too_few_for_any_k(random_prior, cifar10_images):
    with pytest.raises(ValueError, match="need at least 2 images"):
        add_rela_targets(cifar10_images.select([0]), random_prior, k=1)


def test_every_image_mode_and_a_huge_image_give_targets(random_prior, cifar10_images):
    """Documented conversion, no error: L, LA, RGBA, CMYK, P, I;16 (scaled, not clipped) and a
    6,000 x 6,000 photo all become RGB at the prior's input size."""
    base = cifar10_images[0]["image"]
    sixteen = PIL.Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    assert sixteen.mode == "I;16"
    images = [base.convert(mode) for mode in ("L", "LA", "RGBA", "CMYK", "P")]
    images += [sixteen, base.resize((6000, 6000))]
    data = datasets.Dataset.from_dict(
        {"image": images + list(cifar10_images["image"][:10])}, features=datasets.Features({"image": datasets.Image()})
    )
    targets = np.asarray(add_rela_targets(data, random_prior, k=4).with_format("numpy")["rela_target"])
    assert targets.shape == (17, 4) and np.isfinite(targets).all()
    grey = random_prior.embed([base.convert("L")])
    assert torch.allclose(random_prior.embed([sixteen]), grey, atol=1e-5)  # 16-bit = 8-bit x 257
