"""Tests for rela_hf.evaluation.features: loading encoders and extracting features, on one
process and across two."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rela_hf.evaluation import (
    encoder_data_config,
    extract_features,
    load_encoder,
)
from rela_hf.hub import export_backbone
from rela_hf.preprocessing import eval_transform, official_data_config


def test_extract_features_matches_a_direct_forward_on_real_images(tiny_encoder, cifar10_images):
    transform = eval_transform(official_data_config(32))
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
    transform = eval_transform(official_data_config(32))
    features, labels = extract_features(tiny_encoder, fashion_mnist_slice.select(range(8)), transform, batch_size=4)
    assert features.shape == (8, 96) and labels.shape == (8,)
    with pytest.raises(KeyError, match="label_column"):
        extract_features(tiny_encoder, fashion_mnist_slice, transform, label_column="target")


GATHER_SCRIPT = textwrap.dedent(
    """
    import sys, timm, torch
    from accelerate import Accelerator
    from rela_hf.assets import foolbox_dataset
    from rela_hf.evaluation import extract_features
    from rela_hf.preprocessing import eval_transform, official_data_config

    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2, accelerator.state
    model = timm.create_model(f"local-dir:{sys.argv[1]}", pretrained=True).eval()
    dataset = foolbox_dataset("cifar10")
    transform = eval_transform(official_data_config(32))
    # 20 images, batch 3 per process, 2 processes: 7 batches, the last one padded by accelerate
    features, labels = extract_features(model, dataset, transform, batch_size=3,
                                        accelerator=accelerator)
    torch.save({"features": features, "labels": labels},
               f"{sys.argv[2]}/rank{accelerator.process_index}.pt")
    """
)


@pytest.mark.slow
def test_extract_features_gathers_exactly_once_per_sample_across_two_processes(tiny_encoder, cifar10_images, tmp_path):
    folder = export_backbone(tiny_encoder, tmp_path / "encoder")
    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    # torchrun sets the env Accelerate reads (MULTI_CPU over gloo); `accelerate launch --cpu`
    # would need an MPI hostfile for several CPU processes.
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(folder),
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    transform = eval_transform(official_data_config(32))
    expected, expected_labels = extract_features(tiny_encoder, cifar10_images, transform)
    for rank in (0, 1):
        gathered = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert gathered["features"].shape == (20, 96)  # no duplicated padding samples
        assert torch.equal(gathered["labels"], expected_labels)  # and in dataset order
        assert torch.allclose(gathered["features"], expected, atol=1e-5)


def test_load_encoder_from_local_export_and_errors(tiny_encoder, tmp_path):
    folder = export_backbone(tiny_encoder, tmp_path / "enc", data_config=official_data_config(32))
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
    with pytest.raises(FileNotFoundError, match=r"config.json"):
        load_encoder(tmp_path / "empty")
    with pytest.raises(ValueError, match="Cannot tell"):
        load_encoder("not-a-repo-or-folder")
    with pytest.raises(ValueError, match="only applies to Hub"):
        load_encoder(folder, revision="main")
