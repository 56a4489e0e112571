"""Tests for rela_hf.hub.model_card: the encoder's model card."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from huggingface_hub import HfApi, ModelCard

from rela_hf.hub import (
    build_hub_folder,
    compute_summary,
    export_backbone,
    push_training_output,
    render_model_card,
)
from rela_hf.hub.card_results import format_accuracy
from rela_hf.preprocessing import official_data_config


def summary_of(run) -> dict:
    return json.loads((run / "training_summary.json").read_text())


def rewrite(run, *, summary: dict | None = None, config: dict | None = None, results: dict | None = None) -> None:
    """Change what a training_run fixture recorded (its summary, config, eval results)."""
    if summary is not None:
        (run / "training_summary.json").write_text(json.dumps({**summary_of(run), **summary}))
    if config is not None:
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    if results is not None:
        (run / "eval_results.json").write_text(json.dumps(results))


def push_card(repo_id: str, repo_type: str, license_yaml: str) -> None:
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    api.upload_file(
        path_or_fileobj=f"---\n{license_yaml}\n---\n# x\n".encode(),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type=repo_type,
    )


def test_compute_summary_gpu_and_cpu_hours():
    gpu = compute_summary(
        {"wall_clock_seconds": 3600, "num_processes": 8, "device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3"}
    )
    assert gpu["hours"] == 8 and gpu["unit"] == "GPU-hours"
    cpu = compute_summary({"wall_clock_seconds": 1800, "device": "cpu"})
    assert cpu["hours"] == 0.5 and cpu["unit"] == "CPU process-hours"


def test_card_metadata_eval_results_and_body(training_run, tmp_path):
    folder = build_hub_folder(training_run, tmp_path / "repo", repo_id="org/rela-test")
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.pipeline_tag == "image-feature-extraction"
    assert data.tags == ["byol", "self-supervised", "rela", "image-feature-extraction", "timm", "rela-hf"]
    assert data.datasets == ["zalando-datasets/fashion_mnist"]
    assert data.base_model is None  # the prior made the targets; it is no base model
    assert data.rela_hf["prior"] == "timm/resnet18.a1_in1k" and data.rela_hf["use_rela"] is True
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
    assert "| 0.6600 |" in text and "| 0.6650 ± 0.0024 |" in text
    assert "after optimizer step 612" in text
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


def test_card_links_the_benchmark_instead_of_quoting_other_runs(training_run):
    card = render_model_card(training_run / "backbone", repo_id="org/x", training_summary=summary_of(training_run))
    assert "the rela-hf benchmark (`benchmarks/results/README.md`" in card.text
    assert not re.search(r"\d+\.\d+ vs \d+\.\d+", card.text)  # no pasted claim of other runs
    assert "80.8" not in card.text and "7 points" not in card.text


def test_accuracies_are_fractions_in_metadata_and_text_alike(training_run):
    results = json.loads((training_run / "eval_results.json").read_text())
    results["results"][0]["value"] = 0.661234
    results["results"][1].update(value=0.70009, std=0.001234)
    card = render_model_card(training_run / "backbone", repo_id="org/x", eval_results=results)
    rows = {
        line.split(" | ")[2]: line.split(" | ")[3]
        for line in card.text.splitlines()
        if line.startswith("| Fashion-MNIST")
    }
    for entry in card.data.eval_results:
        assert 0 <= entry.metric_value <= 1
        protocol = entry.metric_name.removesuffix(" top-1 accuracy")
        assert rows[protocol].split(" ± ")[0] == format_accuracy(entry.metric_value)
    assert [e.metric_value for e in card.data.eval_results] == [0.6612, 0.7001]
    assert rows["linear probe (100 epochs, Adam lr 0.0003)"] == "0.7001 ± 0.0012"
    assert "%" not in "".join(rows.values())


def test_licence_comes_from_the_data_and_the_prior_through_a_push(hub, hub_namespace, training_run):
    data_id, prior_id = f"{hub_namespace}/images", f"{hub_namespace}/prior"
    push_card(data_id, "dataset", "license: cc-by-nc-4.0")
    push_card(prior_id, "model", "license: apache-2.0")
    rewrite(
        training_run, summary={"dataset": data_id, "prior": prior_id, "dataset_revision": None, "prior_revision": None}
    )
    repo_id = f"{hub_namespace}/rela-nc"
    push_training_output(training_run, repo_id)
    card = ModelCard.load(repo_id)
    assert card.data.license == "cc-by-nc-4.0"  # weights trained on NC data are NC
    assert card.data.datasets == [data_id] and card.data.base_model is None
    assert card.data.rela_hf["license_inputs"] == [
        {"role": "training data", "name": data_id, "license": "cc-by-nc-4.0"},
        {"role": "prior", "name": prior_id, "license": "apache-2.0"},
    ]
    row = f"| `{data_id}` | training data | cc-by-nc-4.0 | the Hub dataset card of `{data_id}` |"
    assert row in card.text
    assert "the most restrictive of the inputs" in card.text


def test_licence_set_by_the_uploader_and_unknown_said_plainly(training_run):
    unknown = render_model_card(training_run / "backbone", repo_id="org/x", training_summary=summary_of(training_run))
    assert unknown.data.license == "unknown" and "apache-2.0" not in str(unknown.data.to_dict())
    assert "rela-hf does not guess a licence" in unknown.text
    assert "`rela-hf-push --license <id>`" in unknown.text
    chosen = render_model_card(
        training_run / "backbone", repo_id="org/x", license="CC-BY-4.0", training_summary=summary_of(training_run)
    )
    assert chosen.data.license == "cc-by-4.0" and "set by the uploader" in chosen.text
    assert "rela-hf does not guess" not in chosen.text
    bare = render_model_card(training_run / "backbone", repo_id="org/x")
    assert bare.data.license == "unknown" and "nothing records what it was made from" in bare.text


def test_initial_weights_are_the_base_model_and_a_licence_input(hub, hub_namespace, training_run):
    start = f"{hub_namespace}/start"
    push_card(start, "model", "license: mit")
    summary = {**summary_of(training_run), "backbone": f"hf-hub:{start}"}
    card = render_model_card(training_run / "backbone", repo_id="org/x", training_summary=summary)
    assert card.data.base_model == start
    assert {"role": "initial weights", "name": start, "license": "mit"} in card.data.rela_hf["license_inputs"]


def test_no_local_path_appears_anywhere_in_the_card(training_run, tmp_path):
    private = tmp_path / "alice-private-projects"
    data, prior = private / "datasets" / "fashion_mnist", private / "priors" / "efficientnet_lite0"
    rewrite(
        training_run,
        summary={
            "dataset": str(data),
            "prior": str(prior),
            "dataset_revision": None,
            "prior_revision": None,
            "backbone": "test_resnet",
        },
        config={
            "dataset_name": str(data),
            "prior": f"local-dir:{prior}",
            "output_dir": str(private / "runs" / "rela"),
            "learning_rate": 0.001,
            "eval_dataset_name": str(data),
        },
        results={
            **json.loads((training_run / "eval_results.json").read_text()),
            "encoder": str(private / "runs" / "rela" / "backbone"),
            "dataset": {
                "id": str(data),
                "name": str(data),
                "split": "test",
                "num_samples": 200,
                "num_train_samples": 500,
            },
        },
    )
    folder = build_hub_folder(training_run, tmp_path / "repo", repo_id="org/local")
    rendered = (folder / "README.md").read_text()
    machine_parts = [part for part in private.parts if part not in ("/", "tmp")]
    assert machine_parts and all(part not in rendered for part in machine_parts), machine_parts
    assert str(tmp_path) not in rendered and "/tmp/" not in rendered
    card = ModelCard.load(folder / "README.md")
    assert card.data.rela_hf["dataset"] == "fashion_mnist" and card.data.rela_hf["dataset_local"]
    assert card.data.rela_hf["prior"] == "efficientnet_lite0" and card.data.rela_hf["prior_local"]
    assert card.data.datasets is None and card.data.eval_results[0].dataset_type == "fashion_mnist"
    assert "`fashion_mnist`, a local folder (no Hub revision)" in card.text
    assert "`efficientnet_lite0`, a local folder (no Hub revision)" in card.text
    assert "dataset_name: <local path fashion_mnist>" in card.text
    assert "| fashion_mnist | train / test |" in card.text


def test_card_says_when_the_prior_was_randomly_initialised(training_run):
    summary = {**summary_of(training_run), "prior_pretrained": False}
    card = render_model_card(training_run / "backbone", repo_id="org/random-prior", training_summary=summary)
    assert "`timm/resnet18.a1_in1k` with **randomly initialised** weights" in card.text
    assert "**randomly initialised** prior model" in card.text
    assert "carry no pretrained model's\n  knowledge" in card.text
    assert card.data.rela_hf["prior_pretrained"] is False
    assert [i["role"] for i in card.data.rela_hf["license_inputs"]] == ["training data"]


def test_uses_and_limitations_name_the_data_the_prior_and_the_evaluated_split(training_run):
    results = json.loads((training_run / "eval_results.json").read_text())
    card = render_model_card(
        training_run / "backbone", repo_id="org/x", training_summary=summary_of(training_run), eval_results=results
    )
    uses = card.text.split("## Uses")[1].split("## Limitations")[0]
    limits = card.text.split("## Limitations and biases")[1].split("## Training")[0]
    assert "**For**" in uses and "**Not for**" in uses and "no classifier" in uses
    assert "`zalando-datasets/fashion_mnist`" in uses
    assert "the prior `timm/resnet18.a1_in1k`" in limits and "biases" in limits
    scope = "kNN and linear probe on frozen features, on the `test` split of Fashion-MNIST only"
    assert scope in limits
    assert "(200 images: the standard error of an accuracy near 0.6650 is about 0.033)" in limits


def test_card_of_a_bare_export_without_training_records(tiny_backbone, tmp_path):
    export = export_backbone(tiny_backbone, tmp_path / "bb", data_config=official_data_config(32))
    card = render_model_card(export, repo_id="org/bare")
    assert "No evaluation results were recorded" in card.text
    assert "none was recorded, so this card makes no claim" in card.text
    assert card.data.eval_results is None
    assert "not recorded" in card.text


def test_card_tells_how_to_register_rela_hf_architectures(tmp_path):
    from rela_hf.backbones import create_backbone

    backbone = create_backbone("test_resnet", cifar_stem=True)
    export = export_backbone(backbone, tmp_path / "bb", data_config=official_data_config(32))
    card = render_model_card(export, repo_id="org/cifar")
    assert "import rela_hf.backbones" in card.text


@pytest.mark.parametrize(
    ("method", "title", "arxiv"),
    [
        ("byol", "BYOL", "2006.07733"),
        ("dino", "DINO", "2104.14294"),
        ("simclr", "SimCLR", "2002.05709"),
        ("supervised", "supervised training", "1512.03385"),
    ],
)
@pytest.mark.parametrize("use_rela", [True, False])
def test_card_names_the_method_and_tags_it(training_run, method, title, arxiv, use_rela):
    summary = {**summary_of(training_run), "method": method, "use_rela": use_rela}
    card = render_model_card(training_run / "backbone", repo_id=f"org/{method}", training_summary=summary)
    self_supervised = method != "supervised"
    expected_tags = [
        method,
        *(["self-supervised"] if self_supervised else []),
        *(["rela"] if use_rela else []),
        "image-feature-extraction",
        "timm",
        "rela-hf",
    ]
    assert card.data.tags == expected_tags
    assert card.data.rela_hf["method"] == method and card.data.rela_hf["use_rela"] is use_rela
    assert f"[{title}](https://arxiv.org/abs/{arxiv})" in card.text
    assert f"eprint    = {{{arxiv}}}" in card.text or method == "supervised"
    assert ("ReLA-accelerated" in card.text) is use_rela
    assert (f"pretrained with ReLA-accelerated {title}" in card.text) is use_rela
    assert (f"| ReLA → {title} switch |" in card.text) is use_rela
    assert (f"; {title} from step 613 |" in card.text) is use_rela
    assert ("prior (made the targets)" in card.text) is use_rela
    assert ("self-supervised (no labels)" in card.text) is self_supervised
    if method != "byol":
        assert "BYOL" not in card.text and "byol" not in card.data.tags
    if not self_supervised:
        assert "not part of this repository" in card.text.split("## Uses")[1]


def test_model_index_never_publishes_a_local_path(training_run, tmp_path):
    results = json.loads((training_run / "eval_results.json").read_text())
    for local in (str(tmp_path / "data" / "fashion_mnist"), "offline:fashion_mnist", "./fmnist"):
        results["dataset"] = {**results["dataset"], "id": local, "name": "Fashion-MNIST"}
        card = render_model_card(training_run / "backbone", repo_id="org/x", eval_results=results)
        dataset = card.data.eval_results[0]
        assert dataset.dataset_type in ("fashion_mnist", "fmnist") and local not in card.content
    results["dataset"]["id"] = "zalando-datasets/fashion_mnist"  # a Hub id is kept
    card = render_model_card(training_run / "backbone", repo_id="org/x", eval_results=results)
    assert card.data.eval_results[0].dataset_type == "zalando-datasets/fashion_mnist"


def test_card_says_which_step_was_exported_and_why(training_run):
    """load_best_model_at_end: the repo holds the best checkpoint's weights; the card says so."""
    summary = json.loads((training_run / "training_summary.json").read_text())
    summary.update(
        metric_for_best_model="knn_accuracy",
        best_step=600,
        best_metric_value=0.8361,
        exported_step=600,
        handover={"kind": "regularize", "steps": 0, "weight": 0.1},
    )
    card = render_model_card(training_run / "backbone", repo_id="org/best", training_summary=summary)
    text = str(card)
    assert "| weights in this repo | step 600: the best checkpoint by validation `knn_accuracy` (0.8361" in text
    assert "the last step (1000) scored lower" in text
    assert "regularize: the ReLA loss stayed after the switch with weight 0.1" in text
