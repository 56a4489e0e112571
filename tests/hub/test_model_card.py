"""Tests for rela_hf.hub.model_card: the encoder's model card."""

from __future__ import annotations

import json

import pytest

from rela_hf.hub import (
    build_hub_folder,
    compute_summary,
    export_backbone,
    render_model_card,
)
from rela_hf.preprocessing import official_data_config


def test_compute_summary_gpu_and_cpu_hours():
    gpu = compute_summary({"wall_clock_seconds": 3600, "num_processes": 8, "device": "cuda:0",
                           "device_name": "NVIDIA H100 80GB HBM3"})
    assert gpu["hours"] == 8 and gpu["unit"] == "GPU-hours"
    cpu = compute_summary({"wall_clock_seconds": 1800, "device": "cpu"})
    assert cpu["hours"] == 0.5 and cpu["unit"] == "CPU process-hours"


def test_card_metadata_eval_results_and_body(training_run, tmp_path):
    from huggingface_hub import ModelCard

    folder = build_hub_folder(training_run, tmp_path / "repo", repo_id="org/rela-test")
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.pipeline_tag == "image-feature-extraction"
    assert {"self-supervised", "byol", "rela", "image-feature-extraction"} <= set(data.tags)
    assert data.license == "apache-2.0"
    assert data.datasets == ["zalando-datasets/fashion_mnist"]
    assert data.model_name == "rela-test"
    expected = json.loads((training_run / "eval_results.json").read_text())
    got = {(r.metric_name.split(" (")[0].split(" top-1")[0], r.dataset_split): r for r in data.eval_results}
    assert len(data.eval_results) == 2
    for result in expected["results"]:
        name = {"knn": "kNN", "linear_probe": "linear probe"}[result["protocol"]]
        entry = got[(name, "test")]
        assert entry.metric_value == pytest.approx(result["value"])
        assert entry.dataset_type == "zalando-datasets/fashion_mnist"
        assert entry.dataset_revision == "c" * 40
    text = card.text
    assert "66.00" in text and "66.50 ± 0.24" in text
    assert "after optimizer step 612" in text
    assert "benchmarks/results/README.md" in text  # the measured acceleration, where users look
    assert "revision `" + "a" * 40 + "`" in text and "revision `" + "b" * 40 + "`" in text
    assert "128000" in text and "20 min 34 s" in text and "CPU process-hours" in text
    assert "learning_rate: 0.001" in text  # the training config as YAML
    assert "](training_curves.png)" in text and (folder / "training_curves.png").is_file()
    assert 'timm.create_model("hf-hub:org/rela-test", pretrained=True)' in text
    assert 'AutoModel.from_pretrained("org/rela-test")' in text
    assert "arXiv" in text and "2405.14669" in text and "2006.07733" in text
    assert "import rela_hf.backbones" not in text  # test_resnet is a plain timm architecture
    assert "[More Information Needed]" not in text
    assert "model-index" in (folder / "README.md").read_text()


def test_card_says_when_the_prior_was_randomly_initialised(training_run, tmp_path):
    summary = json.loads((training_run / "training_summary.json").read_text())
    card = render_model_card(training_run / "backbone", repo_id="org/random-prior",
                             training_summary={**summary, "prior_pretrained": False})
    assert "`timm/resnet18.a1_in1k` with **randomly initialised** weights" in card.text
    assert card.data.rela_hf["prior_pretrained"] is False


def test_card_of_a_bare_export_without_training_records(tiny_backbone, tmp_path):
    export = export_backbone(tiny_backbone, tmp_path / "bb", data_config=official_data_config(32))
    card = render_model_card(export, repo_id="org/bare")
    assert "No evaluation results were recorded" in card.text
    assert card.data.eval_results is None
    assert "not recorded" in card.text


def test_card_tells_how_to_register_rela_hf_architectures(tmp_path):
    from rela_hf.backbones import create_backbone

    backbone = create_backbone("test_resnet", cifar_stem=True)
    export = export_backbone(backbone, tmp_path / "bb", data_config=official_data_config(32))
    card = render_model_card(export, repo_id="org/cifar")
    assert "import rela_hf.backbones" in card.text


@pytest.mark.parametrize(("ssl_method", "title", "arxiv"), [("dino", "DINO", "2104.14294"),
                                                             ("simclr", "SimCLR", "2002.05709")])
def test_card_names_the_ssl_method(training_run, ssl_method, title, arxiv):
    summary = json.loads((training_run / "training_summary.json").read_text())
    card = render_model_card(training_run / "backbone", repo_id=f"org/rela-{ssl_method}",
                             training_summary={**summary, "ssl_method": ssl_method})
    assert f"ReLA-accelerated {title}-pretrained" in card.text
    assert f"plain [{title}](https://arxiv.org/abs/{arxiv})" in card.text
    assert f"| ReLA → {title} switch |" in card.text and "BYOL" not in card.text
    assert ssl_method in card.data.tags and "byol" not in card.data.tags
    assert f"eprint    = {{{arxiv}}}" in card.text  # the method's citation beside ReLA's
    assert card.data.rela_hf["ssl_method"] == ssl_method
    baseline = render_model_card(training_run / "backbone", repo_id="org/x",
                                 training_summary={**summary, "ssl_method": ssl_method, "method": "baseline"})
    assert f"trained with [{title}]" in baseline.text and "ReLA-accelerated" not in baseline.text


def test_model_index_never_publishes_a_local_path(training_run, tmp_path):
    results = json.loads((training_run / "eval_results.json").read_text())
    for local in (str(tmp_path / "data" / "fashion_mnist"), "offline:fashion_mnist", "./fmnist"):
        results["dataset"] = {**results["dataset"], "id": local, "name": "Fashion-MNIST"}
        card = render_model_card(training_run / "backbone", repo_id="org/x", eval_results=results)
        dataset = card.data.eval_results[0]
        assert dataset.dataset_type == "fashion_mnist" and local not in card.content
    results["dataset"]["id"] = "zalando-datasets/fashion_mnist"  # a Hub id is kept
    card = render_model_card(training_run / "backbone", repo_id="org/x", eval_results=results)
    assert card.data.eval_results[0].dataset_type == "zalando-datasets/fashion_mnist"
