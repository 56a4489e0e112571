"""The timm prior loader on real images: embeddings equal to a hand-written loop, input sizes,
image modes, the official preprocessing, folders, fingerprints, pickling."""

from __future__ import annotations

import json

import torch
import transformers
from torchvision import transforms as T

from rela_hf.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from rela_hf.priors import (
    Prior,
    load_prior,
    official_transform,
)
from tests.priors import timm_pooled, tiny_vit_config


def test_random_timm_prior_embeds_real_images_like_a_hand_written_loop(images):
    prior = load_prior("test_resnet", pretrained=False, device="cpu")

    assert isinstance(prior, Prior)
    assert (prior.library, prior.revision, prior.name) == ("timm", None, "test_resnet")
    assert prior.embed_dim == prior.model.num_features == 96
    assert not prior.model.training
    assert not any(p.requires_grad for p in prior.model.parameters())
    # the prior's own preprocessing: test_resnet's pretrained_cfg (160 px, bilinear, crop 0.95)
    assert prior.preprocessing == {
        "mode": "prior",
        "input_size": [3, 160, 160],
        "interpolation": "bilinear",
        "crop_pct": 0.95,
        "crop_mode": "center",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    json.dumps(prior.preprocessing)  # JSON-able, e.g. for a dataset card

    embeddings = prior.embed(images)
    assert embeddings.shape == (20, 96) and embeddings.dtype == torch.float32
    assert embeddings.device.type == "cpu" and not embeddings.requires_grad
    assert torch.isfinite(embeddings).all()
    pixels = torch.stack([prior.transform(image) for image in images])
    assert pixels.shape == (20, 3, 160, 160)
    torch.testing.assert_close(embeddings, timm_pooled(prior.model, pixels))
    # a preprocessed tensor batch takes the same path, and embeddings repeat exactly
    assert torch.equal(prior.embed(pixels), embeddings)
    # an ordinary tensor: it can be used in a later autograd computation
    student = torch.randn(20, 96, requires_grad=True)
    torch.nn.functional.cosine_similarity(student, prior.embed(images[:20])).sum().backward()


def test_image_size_overrides_the_input_size_of_cnns_and_vits(images):
    cnn = load_prior("test_resnet", pretrained=False, image_size=48)
    assert cnn.preprocessing["input_size"] == [3, 48, 48]
    assert cnn.transform(images[0]).shape == (3, 48, 48)
    assert cnn.embed(images[:4]).shape == (4, 96)

    # a ViT bakes its size into position embeddings: the model is rebuilt at the new size
    vit = load_prior("test_vit", pretrained=False, image_size=64)
    assert vit.model.patch_embed.img_size == (64, 64)
    assert vit.embed(images[:4]).shape == (4, vit.embed_dim)


def test_grayscale_rgba_and_palette_images_are_converted_to_rgb(images, fashion_mnist_slice):
    prior = load_prior("test_resnet", pretrained=False, image_size=32)
    grey = list(fashion_mnist_slice["image"][:4])
    assert {image.mode for image in grey} == {"L"}
    rgba = [image.convert("RGBA") for image in images[:4]]
    palette = [image.convert("P") for image in images[:4]]

    assert prior.transform(grey[0]).shape == (3, 32, 32)
    torch.testing.assert_close(prior.embed(grey), prior.embed([g.convert("RGB") for g in grey]))
    torch.testing.assert_close(prior.embed(rgba), prior.embed(images[:4]))
    torch.testing.assert_close(prior.embed(palette), prior.embed([p.convert("RGB") for p in palette]))


def test_official_preprocessing_is_resize_centre_crop_imagenet_normalisation(images):
    prior = load_prior("test_resnet", pretrained=False, preprocessing="official", image_size=32)
    assert prior.preprocessing["mode"] == "official"
    assert prior.preprocessing["input_size"] == [3, 32, 32]
    assert tuple(prior.preprocessing["mean"]) == IMAGENET_MEAN
    assert tuple(prior.preprocessing["std"]) == IMAGENET_STD

    reference = T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    wide = images[0].resize((48, 32))  # not square: the shorter side is resized, then cropped
    for image in (images[0], wide):
        torch.testing.assert_close(prior.transform(image), reference(image))
    # without image_size the prior's own input size is used
    default = load_prior("test_resnet", pretrained=False, preprocessing="official")
    assert default.preprocessing["input_size"] == [3, 160, 160]
    assert isinstance(official_transform(64)(images[0]), torch.Tensor)


def test_local_timm_folder_loads_its_weights_by_path_and_by_local_dir(timm_folder, images):
    folder, original = timm_folder
    by_path = load_prior(str(folder))
    by_prefix = load_prior(f"local-dir:{folder}")
    assert by_path.library == by_prefix.library == "timm"
    assert by_path.revision is None and by_path.name == str(folder)

    pixels = by_path.preprocess(images[:8])
    expected = timm_pooled(original, pixels)  # the saved weights, not a random init
    torch.testing.assert_close(by_path.embed(pixels), expected)
    torch.testing.assert_close(by_prefix.embed(pixels), expected)
    assert by_path.fingerprint == load_prior(str(folder)).fingerprint


def test_timm_folder_loaded_with_transformers_gives_the_same_embeddings(timm_folder, images):
    folder, _ = timm_folder
    timm_prior = load_prior(str(folder))
    hf_prior = load_prior(str(folder), library="transformers")
    assert hf_prior.library == "transformers"
    assert type(hf_prior.model).__name__ == "TimmWrapperModel"
    assert hf_prior.embed_dim == timm_prior.embed_dim
    pixels = timm_prior.preprocess(images[:4])
    torch.testing.assert_close(hf_prior.preprocess(images[:4]), pixels)
    torch.testing.assert_close(hf_prior.embed(pixels), timm_prior.embed(pixels), rtol=1e-5, atol=1e-5)


def test_fingerprint_tells_random_priors_apart():
    torch.manual_seed(0)
    first = load_prior("test_resnet", pretrained=False)
    torch.manual_seed(0)
    same = load_prior("test_resnet", pretrained=False)
    torch.manual_seed(1)
    other = load_prior("test_resnet", pretrained=False)
    assert first.fingerprint == same.fingerprint != other.fingerprint
    assert first.fingerprint != load_prior("test_resnet", pretrained=False, image_size=32).fingerprint


def test_to_moves_the_model_and_returns_the_prior(images):
    prior = load_prior("test_resnet", pretrained=False, channels_last=True, image_size=32)
    assert prior.to("cpu") is prior and prior.device == torch.device("cpu")
    reference = prior.embed(images[:4])
    # a prior cast to half precision (as on a GPU) still takes float32 input and gives float32
    prior.model.to(torch.bfloat16)
    half = prior.embed(images[:4])
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, rtol=0.1, atol=0.1)


def test_priors_pickle_for_dataset_map_workers(timm_folder, tmp_path, images):
    import pickle

    transformers.ViTModel(tiny_vit_config()).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    for prior in (load_prior(str(timm_folder[0])), load_prior(str(tmp_path))):
        clone = pickle.loads(pickle.dumps(prior))
        torch.testing.assert_close(clone.embed(images[:2]), prior.embed(images[:2]))
