"""score_priors on real images (rela_hf.prior_scores.scoring, .embeddings): deterministic, the
order of priors whose order is certain, the targets cost, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rela_hf.prior_scores import LABEL_FREE_SCORES, PRIMARY_SCORE, PriorScore, score_priors
from rela_hf.prior_scores.embeddings import embed_prior, sample_images
from rela_hf.priors import load_prior

RANDOM_RESNET = "resnet=test_resnet,random_init=true,seed=0,image_size=32"
RANDOM_VIT = "vit=test_vit,random_init=true,seed=0,image_size=32"


@pytest.fixture(scope="module")
def constant_prior():
    """A prior whose embedding of every image is the same (all weights zero): nothing to learn."""
    prior = load_prior("test_resnet", pretrained=False, image_size=32, device="cpu")
    with torch.no_grad():
        for parameter in prior.model.parameters():
            parameter.zero_()
    prior.name = "constant"
    return prior


@pytest.fixture(scope="module")
def efficientnet_folder(tmp_path_factory) -> str:
    """The real ImageNet EfficientNet-Lite0 as a timm folder (offline assets)."""
    from rela_hf.convert import convert_efficientnet_lite0

    return str(convert_efficientnet_lite0(tmp_path_factory.mktemp("prior") / "efficientnet_lite0"))


def test_scores_are_deterministic_and_ranked(fashion_mnist_slice, single_torch_thread):
    options = {"label_column": "label", "max_samples": 48, "student_width": 32, "seed": 3}
    first = score_priors(fashion_mnist_slice, [RANDOM_RESNET, RANDOM_VIT], **options)
    again = score_priors(fashion_mnist_slice, [RANDOM_VIT, RANDOM_RESNET], **options)
    assert [r.name for r in first] == [r.name for r in again]
    for a, b in zip(first, again, strict=True):
        assert a.scores == b.scores and a.knn_accuracy == b.knn_accuracy  # timings aside
    assert first[0].score >= first[1].score
    assert set(first[0].scores) == set(LABEL_FREE_SCORES)
    assert first[0].score == first[0].scores[PRIMARY_SCORE]
    assert {r.target_dim for r in first} == {32} and all(r.num_images == 48 for r in first)


def test_a_constant_prior_ranks_last(fashion_mnist_slice, constant_prior, single_torch_thread):
    ranked = score_priors(
        fashion_mnist_slice,
        [constant_prior, RANDOM_RESNET],
        label_column="label",
        max_samples=48,
        student_width=32,
    )
    assert [r.name for r in ranked] == ["resnet", "constant"]
    useful, constant = ranked
    assert constant.target_dim == 0 and constant.numerical_rank == 0
    for name in ("view_alignment", "view_retrieval", "effective_rank"):
        assert useful.scores[name] > constant.scores[name], name
    # (target_invariance is no such score: a random network's view targets can lie farther from
    # their image's target than other images' do, below the constant prior's 0)


def test_the_imagenet_prior_outscores_its_random_weights(fashion_mnist_slice, efficientnet_folder, single_torch_thread):
    """A certain order on real images: ImageNet features of clothes are stable under ReLA's
    augmentations and separate the classes; the same network with random weights is not."""
    ranked = score_priors(
        fashion_mnist_slice,
        [f"imagenet={efficientnet_folder}", f"random={efficientnet_folder},random_init=true"],
        label_column="label",
        image_size=64,
        student_width=32,
    )
    imagenet, random = ranked
    assert (imagenet.name, random.name) == ("imagenet", "random")
    assert imagenet.score > random.score + 0.1
    assert imagenet.knn_accuracy > random.knn_accuracy


def test_the_targets_cost_is_the_time_per_image_times_the_dataset(fashion_mnist_slice, single_torch_thread):
    result = score_priors(fashion_mnist_slice, [RANDOM_RESNET], max_samples=16, dataset_size=1_000_000)[0]
    assert result.knn_accuracy is None  # no labels: label-free scores only
    assert result.dataset_size == 1_000_000 and result.seconds_per_image > 0
    assert result.projected_targets_seconds == pytest.approx(1_000_000 * result.seconds_per_image)
    assert result.scoring_seconds > 0 and result.scoring_cpu_seconds > 0
    as_dict = result.to_dict()
    assert as_dict["score"] == result.score and as_dict["primary_score"] == PRIMARY_SCORE
    assert {f.name for f in dataclasses.fields(PriorScore)} <= set(as_dict)


def test_every_prior_sees_the_same_views(cifar10_images, single_torch_thread):
    prior = load_prior("test_resnet", pretrained=False, image_size=32, device="cpu")
    sample = sample_images(cifar10_images, max_samples=8, seed=0)
    torch.manual_seed(123)
    first = embed_prior(prior, sample.images, seed=7)
    torch.manual_seed(456)  # the caller's random state does not matter
    again = embed_prior(prior, sample.images, seed=7)
    assert torch.equal(first.views, again.views) and torch.equal(first.clean, again.clean)
    assert not torch.allclose(first.views, first.clean)  # the views are augmented
    assert not torch.equal(embed_prior(prior, sample.images, seed=8).views, first.views)


def test_the_sample_is_a_fixed_random_subset(fashion_mnist_slice):
    sample = sample_images(fashion_mnist_slice, label_column="label", max_samples=10, seed=1)
    assert sample.indices == sample_images(fashion_mnist_slice, max_samples=10, seed=1).indices
    assert sample.indices != list(range(10)) and len(set(sample.indices)) == 10
    assert sample.labels.tolist() == [fashion_mnist_slice[i]["label"] for i in sample.indices]
    assert all(image.mode == "RGB" for image in sample.images) and sample.dataset_size == 64


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"priors": []}, "at least one candidate"),
        ({"priors": ["a=test_resnet", "a=test_vit"]}, "share a name"),
        ({"priors": [RANDOM_RESNET], "label_column": "class"}, "no label column 'class'.*'label'"),
        ({"priors": [RANDOM_RESNET], "image_column": "img"}, "no image column 'img'"),
        ({"priors": [RANDOM_RESNET], "max_samples": 2}, "at least 3 images"),
        ({"priors": ["test_resnet,image_size=x"]}, "image_size must be"),
    ],
)
def test_bad_input_is_refused_before_any_prior_runs(fashion_mnist_slice, call, message):
    with pytest.raises(ValueError, match=message):
        score_priors(fashion_mnist_slice, **call)
