"""What every preset trains loads with plain timm and transformers, in a process without rela_hf.

For each preset in recipes/configs/ the backbone the trainer would build
(``ReLATrainingArguments.from_config`` + ``build_backbone``; ResNets without ``backbone_kwargs``
at 1/4 width to stay fast, same architecture family and stem) gets non-trivial weights and is
exported as the trainer exports it (``official_data_config(image_size)``); the flagship
(``cifar10_resnet18``) is pushed to the test Hub. One fresh interpreter with a clean environment
(only the test Hub's ``HF_*`` variables, a fresh cache, ``python -I``, rela_hf blocked from
import) loads every export with ``timm.create_model("local-dir:...", pretrained=True)``,
``AutoModel.from_pretrained`` and ``pipeline("image-feature-extraction", pool=True)``, and the
flagship from the Hub as well, on real CIFAR-10 images. The features must equal the backbone's.
A ``--cifar_stem`` export is the negative control: it warns when exported and fails to load there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from rela_hf.backbones import create_backbone
from rela_hf.hub import export_backbone, push_encoder
from rela_hf.hub.export import is_timm_native, read_export_config
from rela_hf.preprocessing import official_data_config
from rela_hf.training import ReLATrainingArguments
from rela_hf.training.student import build_backbone
from tests.hub import timm_pixels

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "recipes" / "configs").glob("*.yaml"))
FLAGSHIP = "cifar10_resnet18"
QUARTER_WIDTH = {"channels": [16, 32, 64, 128]}  # a ResNet's stage widths (its stem stays 64)
N_IMAGES = 6

PLAIN_CLIENT = textwrap.dedent(
    """
    # A user's process: timm, transformers and PIL only. rela_hf is blocked (and any attempt to
    # import it recorded), and so is every host but this machine (the test Hub).
    import importlib.abc, json, socket, sys, traceback

    ATTEMPTS, LOOKUPS = [], []

    class NoRelaHf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "rela_hf":
                ATTEMPTS.append(name)
                raise ImportError(f"{name} may not be imported by a plain client")
            return None

    sys.meta_path.insert(0, NoRelaHf())
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in ("localhost", "None", "") and not name.startswith("127."):
            LOOKUPS.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"a plain client test may not reach {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = local_only

    import timm, torch
    from PIL import Image
    from transformers import AutoModel, pipeline

    spec = json.loads(open(sys.argv[1]).read())
    images = [Image.open(path).convert("RGB") for path in spec["images"]]

    def load(job):
        model = timm.create_model(job["timm"], pretrained=True).eval()
        config = timm.data.resolve_data_config(model=model)
        transform = timm.data.create_transform(**config)
        pixels = torch.stack([transform(image) for image in images])
        wrapper = AutoModel.from_pretrained(job["transformers"]).eval()
        extractor = pipeline("image-feature-extraction", model=job["transformers"], pool=True)
        with torch.no_grad():
            return {"timm": model(pixels), "architecture": model.pretrained_cfg["architecture"],
                    "transformers": wrapper(pixel_values=pixels).pooler_output,
                    "pipeline": torch.tensor([row[0] for row in extractor(images)]),
                    "input_size": list(config["input_size"])}

    results = {}
    for job in spec["jobs"]:
        try:
            results[job["name"]] = load(job)
        except Exception:
            results[job["name"]] = {"error": traceback.format_exc()}
    results["_process"] = {"rela_hf_imported": "rela_hf" in sys.modules, "attempts": ATTEMPTS,
                           "lookups": LOOKUPS}
    torch.save(results, spec["out"])
    assert "rela_hf" not in sys.modules, sorted(m for m in sys.modules if m.startswith("rela_hf"))
    """
)


def preset_backbone(preset: Path) -> tuple[nn.Module, ReLATrainingArguments]:
    """The student backbone the preset trains (a ResNet at 1/4 width unless the preset sizes it)."""
    args = ReLATrainingArguments.from_config(str(preset))
    if not args.backbone_kwargs_dict() and args.backbone.startswith("resnet"):
        args = ReLATrainingArguments.from_config(str(preset), backbone_kwargs=QUARTER_WIDTH)
    torch.manual_seed(0)
    return build_backbone(args), args


def give_nontrivial_weights(backbone: nn.Module, pixels: torch.Tensor) -> nn.Module:
    """Random BatchNorm scales and shifts, statistics from real images: features no freshly
    initialised model computes (timm zero-initialises each block's last BN scale, which would
    hide a residual branch whose weights failed to load)."""
    generator = torch.Generator().manual_seed(1)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data = torch.rand(module.weight.shape, generator=generator) + 0.5
            module.bias.data = 0.1 * torch.randn(module.bias.shape, generator=generator)
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the calibration pass
    with torch.no_grad():
        backbone.train()(pixels)
    return backbone.eval()


def export_preset(preset: Path, images: list, folder: Path) -> dict:
    """The preset's student exported as the trainer exports it, with its expected features."""
    backbone, args = preset_backbone(preset)
    data_config = official_data_config(args.image_size)
    pixels = timm_pixels(images, data_config)
    give_nontrivial_weights(backbone, pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_backbone(backbone, folder, data_config=data_config)
    with torch.no_grad():
        expected = backbone(pixels)
    return {
        "folder": folder,
        "expected": expected,
        "image_size": args.image_size,
        "warnings": [str(w.message) for w in caught if "timm does not define" in str(w.message)],
    }


def plain_client_env(home: Path) -> dict[str, str]:
    """A clean environment: the test Hub's ``HF_*`` settings (tests/conftest.py) and a fresh
    cache; no PYTHONPATH, nothing else of the test process."""
    env = {key: value for key, value in os.environ.items() if key.startswith("HF_")}
    return {
        **env,
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_plain_client(jobs: list[dict], images: list, workdir: Path) -> dict:
    paths = []
    for index, image in enumerate(images):
        paths.append(str(workdir / f"cifar10_{index}.png"))
        image.save(paths[-1])
    spec = {"images": paths, "jobs": jobs, "out": str(workdir / "features.pt")}
    (workdir / "spec.json").write_text(json.dumps(spec))
    (workdir / "plain_client.py").write_text(PLAIN_CLIENT)
    run = subprocess.run(
        [sys.executable, "-I", "plain_client.py", "spec.json"],
        cwd=workdir,
        env=plain_client_env(workdir),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return torch.load(workdir / "features.pt", weights_only=True)


@pytest.fixture(scope="module")
def plain_loads(hub, cifar10_images, tmp_path_factory):
    """Every preset exported, the flagship pushed, all loaded by one plain client process."""
    root = tmp_path_factory.mktemp("plain_load")
    images = list(cifar10_images["image"])[:N_IMAGES]
    exports = {p.stem: export_preset(p, images, root / "exports" / p.stem) for p in PRESETS}
    repo_id = f"test-{uuid.uuid4().hex[:10]}/rela-byol-resnet18-cifar10"
    push_encoder(exports[FLAGSHIP]["folder"], repo_id)
    control = create_backbone("test_resnet", cifar_stem=True).eval()
    with pytest.warns(UserWarning, match="timm does not define"):
        control_dir = export_backbone(
            control, root / "exports" / "cifar_stem_control", data_config=official_data_config(32)
        )
    jobs = [
        {"name": name, "timm": f"local-dir:{e['folder']}", "transformers": str(e["folder"])}
        for name, e in exports.items()
    ]
    jobs.append({"name": "hub", "timm": f"hf-hub:{repo_id}", "transformers": repo_id})
    jobs.append(
        {
            "name": "cifar_stem_control",
            "timm": f"local-dir:{control_dir}",
            "transformers": str(control_dir),
        }
    )
    workdir = root / "client"
    workdir.mkdir()
    return {"exports": exports, "loaded": run_plain_client(jobs, images, workdir)}


def assert_same_features(loaded: dict, export: dict) -> None:
    assert "error" not in loaded, loaded.get("error")
    size = export["image_size"]
    assert loaded["input_size"] == [3, size, size]
    for client in ("timm", "transformers", "pipeline"):
        assert loaded[client].shape == export["expected"].shape, client
        torch.testing.assert_close(
            loaded[client],
            export["expected"],
            rtol=1e-4,
            atol=1e-4,
            msg=lambda m, c=client: f"{c}: {m}",
        )


def test_every_preset_is_covered():
    names = {p.stem for p in PRESETS}
    assert {
        FLAGSHIP,
        f"{FLAGSHIP}_dino",
        f"{FLAGSHIP}_simclr",
        f"{FLAGSHIP}_supervised",
        "imagenet_resnet50",
    } <= names


@pytest.mark.parametrize("preset", [p.stem for p in PRESETS])
def test_preset_student_is_timm_native_and_exports_without_warning(plain_loads, preset):
    export = plain_loads["exports"][preset]
    architecture = read_export_config(export["folder"])["architecture"]
    assert is_timm_native(architecture), f"{preset} trains {architecture}, which timm does not define"
    assert export["warnings"] == []


@pytest.mark.parametrize("preset", [p.stem for p in PRESETS])
def test_preset_export_loads_plainly_with_the_same_features(plain_loads, preset):
    assert_same_features(plain_loads["loaded"][preset], plain_loads["exports"][preset])


def test_flagship_loads_from_the_hub_with_the_same_features(plain_loads):
    loaded = plain_loads["loaded"]["hub"]
    assert_same_features(loaded, plain_loads["exports"][FLAGSHIP])
    assert loaded["architecture"] == "resnet18"


def test_the_client_never_imported_rela_hf_nor_left_this_machine(plain_loads):
    process = plain_loads["loaded"]["_process"]
    assert process == {"rela_hf_imported": False, "attempts": [], "lookups": []}


def test_a_cifar_stem_export_warns_and_does_not_load_plainly(plain_loads):
    error = plain_loads["loaded"]["cifar_stem_control"]["error"]
    assert "test_resnet_cifar" in error  # timm: unknown model, without rela_hf's registration
