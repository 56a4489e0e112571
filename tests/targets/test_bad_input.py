"""Bad input to add_rela_targets: a clear error that names the problem, and nothing written."""

from __future__ import annotations

import io

import datasets
import PIL.Image
import pytest

from rela_hf.targets import add_rela_targets, rela_targets_info, whiten_new_images


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
