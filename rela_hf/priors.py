"""Prior models for ReLA-D: any public image encoder behind one small interface.

ReLA (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669) pairs every training image with a fixed
target vector made by a *prior model*: "any publicly available pretrained encoder" (a CIFAR-10
ResNet-18, a CLIP image tower, even a randomly initialised network). This module turns a timm
model, a transformers model or a local folder into a :class:`Prior`: the frozen model, its
deterministic preprocessing and a batched ``embed`` that returns one pooled embedding per image.

Which embedding is taken (spec, ReLA-D step 2):

- timm: ``forward_head(forward_features(x), pre_logits=True)``, the pooled features the classifier
  would see (``head_hidden_size`` wide, else ``num_features``).
- transformers, CLIP (``model_type`` ``clip``, or a ``CLIPVisionModelWithProjection``): only the
  vision tower and its projection are loaded; the embedding is the projected ``image_embeds``
  (what ``CLIPModel.get_image_features`` returns).
- transformers, other dual encoders with ``get_image_features`` (SigLIP, ALIGN, ...): that method
  (the full model is loaded).
- transformers, any other ``AutoModel`` taking ``pixel_values``: ``pooler_output`` (flattened) when
  the model has one *and its weights came from the checkpoint*; otherwise the CLS token
  (``last_hidden_state[:, 0]``) for token sequences and the spatial mean for feature maps. The
  exception matters: ``ViTModel`` adds a ``tanh(Linear(CLS))`` pooler that checkpoints such as
  DINO ViTs do not contain, and a freshly initialised pooler would scramble the targets.

Preprocessing (spec, ReLA-D step 1):

- ``"prior"`` (default): the prior's own evaluation preprocessing: timm's ``pretrained_cfg``
  through ``resolve_model_data_config`` + ``create_transform``; transformers' image processor.
- ``"official"``: what the official ReLA code does for every prior: shorter side resized to
  ``image_size`` (bilinear), centre crop, ImageNet mean/std. Kept for comparisons.

Precision: models load in float32 (transformers 5 would otherwise keep a checkpoint's fp16);
pass ``dtype=torch.bfloat16`` (transformers) or cast ``prior.model`` to run in half precision;
``embed`` casts its input to the model's dtype and always returns float32.

Provenance: ``Prior.revision`` is the Hub commit the weights came from (also for timm registry
names whose weights live on the Hub), and ``Prior.fingerprint`` identifies the targets a prior
produces (for ``Dataset.map(new_fingerprint=...)``).

Examples:
    >>> prior = load_prior("hf-hub:timm/resnet18.a1_in1k")          # doctest: +SKIP
    >>> prior = load_prior("openai/clip-vit-base-patch16")           # doctest: +SKIP
    >>> prior = load_prior("test_resnet", pretrained=False)          # a random prior
    >>> prior.embed([PIL.Image.new("RGB", (32, 32))]).shape          # doctest: +SKIP
    torch.Size([1, 96])
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from torch import nn
from torchvision import transforms as T  # type: ignore[import-untyped]

from rela_hf.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "LIBRARIES",
    "PREPROCESSING_MODES",
    "Prior",
    "PriorError",
    "PriorNotFoundError",
    "UnsupportedPriorError",
    "load_prior",
    "official_transform",
]

LIBRARIES = ("auto", "timm", "transformers")
PREPROCESSING_MODES = ("prior", "official")

_TIMM_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
class PriorError(Exception):
    """Base class of the errors raised while loading a prior."""


class PriorNotFoundError(PriorError, FileNotFoundError):
    """The prior (folder, Hub repository, revision or weights) could not be found or reached."""


class UnsupportedPriorError(PriorError, ValueError):
    """The model exists but cannot serve as an image prior (text model, remote code, ...)."""


# ---------------------------------------------------------------------------------------------
# transforms (top-level classes so that a Prior's transform pickles for datasets' map workers)
# ---------------------------------------------------------------------------------------------
class ConvertRGB:
    """Convert any PIL image (L, LA, RGBA, P, CMYK, ...) to RGB; RGB images pass unchanged.

    Alpha is dropped, as transformers' ``convert_rgb`` and torchvision datasets do.
    """

    def __call__(self, image: PIL.Image.Image) -> PIL.Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ImageProcessorTransform:
    """One PIL image -> normalised CHW tensor through a transformers image processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        pixel_values = self.processor(images=ConvertRGB()(image), return_tensors="pt")[
            "pixel_values"
        ]
        return pixel_values[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.processor).__name__})"


def official_transform(image_size: int) -> T.Compose:
    """The official ReLA code's input for every prior (``boostor/rela.py::add_reladata``).

    ``Resize(s)`` (shorter side, bilinear), ``CenterCrop(s)``, ``ToTensor``, ImageNet ``Normalize``.
    """
    return T.Compose(
        [
            ConvertRGB(),
            T.Resize(image_size, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def _official_preprocessing(image_size: int) -> dict[str, Any]:
    return {
        "mode": "official",
        "input_size": [3, image_size, image_size],
        "resize": image_size,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


# ---------------------------------------------------------------------------------------------
# embedding functions (picklable callables: model, batch -> [B, D])
# ---------------------------------------------------------------------------------------------
class TimmPooledFeatures:
    """timm: pooled pre-logits, ``forward_head(forward_features(x), pre_logits=True)``."""

    def __call__(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        timm_model: Any = model  # forward_features/forward_head: timm's model API
        features = timm_model.forward_features(pixel_values)
        return timm_model.forward_head(features, pre_logits=True)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True)
class TransformersPooledFeatures:
    """transformers: one pooled vector per image, chosen by ``pooling`` (see the module docstring).

    Attributes:
        pooling: ``image_features`` (``get_image_features``), ``image_embeds`` (CLIP vision tower
            with projection), ``pooler`` (``pooler_output``), ``cls`` (``last_hidden_state[:, 0]``)
            or ``mean`` (spatial mean of a ``[B, C, H, W]`` ``last_hidden_state``).
        forward_kwargs: extra keyword arguments of the forward call, e.g.
            ``interpolate_pos_encoding=True`` when a ViT runs at another input size.
    """

    pooling: str
    forward_kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        kwargs = dict(self.forward_kwargs)
        hf_model: Any = model  # a transformers PreTrainedModel
        if self.pooling == "image_features":
            out = hf_model.get_image_features(pixel_values=pixel_values, **kwargs)
            # transformers 5 returns a ModelOutput whose pooler_output is the projected embedding
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        out = model(pixel_values=pixel_values, **kwargs)
        if self.pooling == "image_embeds":
            return out.image_embeds
        if self.pooling == "pooler":
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "mean":
            return hidden.mean(dim=(2, 3))
        raise ValueError(f"Unknown pooling rule {self.pooling!r}.")


# ---------------------------------------------------------------------------------------------
# the Prior
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Prior:
    """A frozen image encoder with its preprocessing: the ReLA-D prior (arXiv:2405.14669, §ReLA-D).

    Attributes:
        model: the network, in eval mode with ``requires_grad`` off.
        name: the id or path as given to :func:`load_prior`.
        revision: the resolved 40-hex commit sha when the weights came from the Hub, else ``None``
            (local folders, timm weights from plain URLs, ``pretrained=False``).
        library: ``"timm"`` or ``"transformers"``.
        embed_dim: width of the embedding returned by :meth:`embed`.
        preprocessing: JSON-able description of :attr:`transform` (``mode``, ``input_size``,
            ``interpolation``, ``mean``, ``std``, and crop/resize settings).
        transform: one PIL image (any mode) -> normalised CHW float tensor.
        device: where :attr:`model` lives and batches are sent.
        embed_fn: ``(model, batch) -> [B, D]``; the pooling rule of the library.
        channels_last: run the forward pass in channels-last memory format (faster for CNNs on
            GPU and on recent CPUs).
        pretrained: ``False`` for randomly initialised weights (``load_prior(...,
            pretrained=False)``), which the targets' record and cards then say.
    """

    model: nn.Module = field(repr=False)
    name: str
    revision: str | None
    library: str
    embed_dim: int
    preprocessing: dict[str, Any]
    transform: Callable[[PIL.Image.Image], torch.Tensor] = field(repr=False)
    device: torch.device
    embed_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = field(repr=False)
    channels_last: bool = False
    pretrained: bool = True
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def preprocess(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        """Apply :attr:`transform` to each image and stack: ``[B, 3, H, W]`` float32 on CPU."""
        if len(images) == 0:
            raise ValueError(
                "Prior.preprocess got no images; pass a non-empty sequence of PIL images."
            )
        return torch.stack([self.transform(image) for image in images])

    def embed(self, images: Sequence[PIL.Image.Image] | torch.Tensor) -> torch.Tensor:
        """Embed a batch in one forward pass (eval mode, no gradients).

        Args:
            images: PIL images (any mode; converted to RGB and preprocessed by :attr:`transform`)
                or an already preprocessed ``[B, 3, H, W]`` tensor.

        Returns:
            ``[B, embed_dim]`` float32 tensor on the CPU (an ordinary tensor, usable in autograd).
        """
        if isinstance(images, torch.Tensor):
            if images.ndim != 4:
                raise ValueError(
                    f"Prior.embed expects a preprocessed batch [B, C, H, W]; got shape "
                    f"{tuple(images.shape)}. Pass PIL images to have them preprocessed."
                )
            batch = images
        else:
            batch = self.preprocess(images)
        batch = batch.to(self.device, dtype=self._input_dtype(), non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            embeddings = self.embed_fn(self.model, batch).float().cpu()
        # clone outside inference mode: inference tensors cannot be saved for a later backward
        return embeddings.clone()

    def _input_dtype(self) -> torch.dtype:
        """The model's floating dtype: float32 unless it was cast (e.g. bf16 on a GPU)."""
        for parameter in self.model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return torch.float32

    def to(self, device: str | torch.device) -> Prior:
        """Move the model to ``device`` (in place) and return ``self``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @property
    def fingerprint(self) -> str:
        """A stable hash identifying the targets this prior produces (for ``Dataset.map``'s
        ``new_fingerprint``): name, revision, library, preprocessing and width, plus a hash of
        the weights when no Hub revision pins them (local folders, random initialisation)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            identity = {
                "name": self.name,
                "revision": self.revision,
                "library": self.library,
                "embed_dim": self.embed_dim,
                "preprocessing": self.preprocessing,
                "embed_fn": repr(self.embed_fn),
            }
            digest.update(json.dumps(identity, sort_keys=True, default=str).encode())
            if self.revision is None:
                for key, tensor in self.model.state_dict().items():
                    digest.update(key.encode())
                    flat = tensor.detach().reshape(-1).contiguous().cpu()
                    digest.update(flat.view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:32]
        return self._fingerprint


# ---------------------------------------------------------------------------------------------
# locating the prior: registry name, local folder or Hub repository
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    library: str  # "timm" | "transformers"
    location: str  # what the library loader receives
    revision: str | None  # resolved commit sha (Hub only)
    config: dict[str, Any] | None  # parsed config.json, when there is one


def _is_timm_config(config: dict[str, Any]) -> bool:
    """timm exports (``save_for_hf``) have ``architecture`` and no ``model_type``."""
    return "model_type" not in config and "architecture" in config


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UnsupportedPriorError(
            f"{path} is not valid JSON ({err}); cannot tell what model it is."
        ) from err


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _download_hub_config(repo_id: str, revision: str | None) -> tuple[dict[str, Any], str]:
    """Fetch ``config.json`` of a Hub model and the commit sha it came from.

    One request for an uncached repo, none for a commit already in the cache. The sha is the name
    of the cache's snapshot folder (``.../snapshots/<sha>/config.json``); if the cache layout ever
    differs, ``model_info`` is asked instead.
    """
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub import errors as hub_errors

    where = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        path = Path(hf_hub_download(repo_id, "config.json", revision=revision))
    except hub_errors.GatedRepoError as err:
        raise PriorNotFoundError(
            f"The Hub model {repo_id!r} is gated: accept its terms on the Hub and log in "
            "(`hf auth login` or HF_TOKEN) to use it as a prior."
        ) from err
    except hub_errors.RepositoryNotFoundError as err:
        raise PriorNotFoundError(
            f"No model repository {repo_id!r} on the Hub ({_hub_endpoint()}), or it is private "
            "and no valid token is set. Check the id (timm registry names have no '/', local "
            "folders must exist), or log in for private repos."
        ) from err
    except hub_errors.RevisionNotFoundError as err:
        raise PriorNotFoundError(
            f"The Hub model {repo_id!r} has no revision {revision!r} (branch, tag or commit sha)."
        ) from err
    except hub_errors.LocalEntryNotFoundError as err:
        raise PriorNotFoundError(
            f"Cannot reach the Hub ({_hub_endpoint()}) to download {where}, and it is not in the "
            "local cache. Check the connection (and that HF_HUB_OFFLINE is unset), or download it "
            "once where the Hub is reachable, or pass a local folder."
        ) from err
    except hub_errors.EntryNotFoundError as err:
        raise UnsupportedPriorError(
            f"The Hub repository {where} has no config.json, so it is neither a timm nor a "
            "transformers model."
        ) from err
    except (hub_errors.HfHubHTTPError, hub_errors.OfflineModeIsEnabled, OSError) as err:
        raise PriorNotFoundError(
            f"Could not download {where} from the Hub ({_hub_endpoint()}): {err}"
        ) from err
    sha: str | None = path.parent.name
    if not _COMMIT_SHA.fullmatch(sha or ""):
        sha = HfApi().model_info(repo_id, revision=revision).sha
    if sha is None:
        raise PriorNotFoundError(f"The Hub did not report a commit sha for {where}.")
    return _read_json(path), sha


def _resolve_timm_registry_revision(
    name: str, revision: str | None
) -> tuple[str | None, str | None]:
    """For a pretrained timm registry name whose weights live on the Hub: (hf_hub_id, sha)."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} was given but timm's {name!r} weights do not come from "
                "the Hub."
            )
        return None, None
    hub_id, _, cfg_revision = hub_id.partition("@")
    # timm's Hub repos carry a config.json: fetching it (or finding it in the cache, offline)
    # names the commit that the weights will come from.
    _, sha = _download_hub_config(hub_id, revision or cfg_revision or None)
    return hub_id, sha


def _choose_library(config: dict[str, Any], library: str, where: str) -> str:
    """``library`` if forced (checking it can load ``config``), else what ``config.json`` says."""
    is_timm = _is_timm_config(config)
    if library == "auto":
        return "timm" if is_timm else "transformers"
    if library == "timm" and not is_timm:
        raise UnsupportedPriorError(
            f"{where} holds a transformers model (model_type={config.get('model_type')!r}), "
            "not a timm export; use library='transformers' or 'auto'."
        )
    return library


def _no_revision_for_folders(revision: str | None, folder: Path) -> None:
    if revision is not None:
        raise ValueError(
            f"revision={revision!r} applies to Hub models, not to the local folder {folder}."
        )


def _locate_timm_prefixed(name: str, library: str, revision: str | None) -> _Source:
    """``local-dir:<folder>`` or ``hf-hub:<org>/<name>[@revision]``: timm's own source syntax."""
    if library == "transformers":
        raise ValueError(
            f"{name!r} uses a timm source prefix; drop the prefix to load it with transformers, "
            "or use library='timm'."
        )
    prefix, _, rest = name.partition(":")
    if prefix == "local-dir":
        folder = Path(rest).expanduser()
        if not (folder / "config.json").is_file():
            raise PriorNotFoundError(f"{name!r}: no timm model folder (config.json) at {folder}.")
        _no_revision_for_folders(revision, folder)
        config = _read_json(folder / "config.json")
        _choose_library(config, "timm", str(folder))
        return _Source("timm", f"local-dir:{folder}", None, config)
    repo_id, _, name_revision = rest.partition("@")
    if name_revision and revision and name_revision != revision:
        raise ValueError(
            f"Two revisions given: {name_revision!r} in {name!r} and revision={revision!r}."
        )
    config, sha = _download_hub_config(repo_id, name_revision or revision)
    _choose_library(config, "timm", f"The Hub repo {repo_id!r}")
    return _Source("timm", f"hf-hub:{repo_id}@{sha}", sha, config)


def _locate_folder(folder: Path, library: str, revision: str | None) -> _Source:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise PriorNotFoundError(
            f"The folder {folder} has no config.json: save the model there with timm's "
            "save_for_hf or transformers' save_pretrained first."
        )
    _no_revision_for_folders(revision, folder)
    config = _read_json(config_path)
    if _choose_library(config, library, str(folder)) == "timm":
        return _Source("timm", f"local-dir:{folder}", None, config)
    return _Source("transformers", str(folder), None, config)


def _locate(name: str, library: str, revision: str | None) -> _Source:
    """Decide which library loads ``name`` and from where (see :func:`load_prior`).

    An existing folder wins over a registry name or Hub id of the same spelling, as in
    transformers' ``from_pretrained``.
    """
    import timm

    if name.startswith(_TIMM_PREFIXES):
        return _locate_timm_prefixed(name, library, revision)
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _locate_folder(folder, library, revision)

    is_bare_name = "/" not in name and "\\" not in name and not name.startswith((".", "~"))
    if is_bare_name and library != "transformers":
        if timm.is_model(timm.models.split_model_name_tag(name)[0]):
            return _Source("timm", name, revision, None)
        raise PriorNotFoundError(
            f"{name!r} is not a timm model name (see timm.list_models()) nor an existing folder. "
            "Hub models are '<org>/<name>' (or 'hf-hub:<org>/<name>' for timm); for a Hub model "
            "without an organisation pass library='transformers'."
        )
    if not is_bare_name and name.count("/") != 1:
        raise PriorNotFoundError(
            f"{name!r} is neither an existing folder nor a Hub repo id of the form '<org>/<name>'."
        )
    config, sha = _download_hub_config(name, revision)
    if _choose_library(config, library, f"The Hub repo {name!r}") == "timm":
        return _Source("timm", f"hf-hub:{name}@{sha}", sha, config)
    return _Source("transformers", name, sha, config)


# ---------------------------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------------------------
def _load_timm(
    source: _Source,
    *,
    preprocessing: str,
    image_size: int | None,
    pretrained: bool,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, str | None, dict[str, Any], Callable[[PIL.Image.Image], torch.Tensor]]:
    import timm
    import timm.data

    location, revision = source.location, source.revision
    kwargs = dict(model_kwargs)
    if source.config is None and pretrained:  # timm registry name: pin the Hub weights, if any
        hub_id, revision = _resolve_timm_registry_revision(location, source.revision)
        if hub_id is not None:
            overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
            overlay["hf_hub_id"] = f"{hub_id}@{revision}"
            kwargs["pretrained_cfg_overlay"] = overlay
    try:
        model = timm.create_model(location, pretrained=pretrained, **kwargs)
        pretrained_cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}))
        native = tuple(pretrained_cfg.get("input_size", (3, 224, 224))[1:])
        if (
            image_size
            and pretrained_cfg.get("fixed_input_size")
            and native != (image_size, image_size)
        ):
            # ViT-style models bake the input size into position embeddings: rebuild at the new
            # size (timm resamples the pretrained position embeddings while loading).
            model = timm.create_model(
                location, pretrained=pretrained, img_size=image_size, **kwargs
            )
    except FileNotFoundError as err:
        raise PriorNotFoundError(f"timm could not find the weights of {location!r}: {err}") from err
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise UnsupportedPriorError(
                f"{location!r}: timm {timm.__version__} does not know the architecture "
                f"({err}); upgrade timm or check the name."
            ) from err
        raise

    data_config = timm.data.resolve_model_data_config(model)
    if image_size:
        data_config["input_size"] = (3, image_size, image_size)
    if preprocessing == "official":
        size = image_size or int(data_config["input_size"][-1])
        return model, revision, _official_preprocessing(size), official_transform(size)
    timm_transform = timm.data.create_transform(**data_config, is_training=False)
    transform = T.Compose([ConvertRGB(), *timm_transform.transforms])
    description = {
        "mode": "prior",
        "input_size": list(data_config["input_size"]),
        "interpolation": data_config["interpolation"],
        "crop_pct": data_config["crop_pct"],
        "crop_mode": data_config["crop_mode"],
        "mean": list(data_config["mean"]),
        "std": list(data_config["std"]),
    }
    return model, revision, description, transform


# ---------------------------------------------------------------------------------------------
# transformers
# ---------------------------------------------------------------------------------------------
def _check_transformers_config(source: _Source, trust_remote_code: bool) -> None:
    """Reject what transformers would refuse or misload, with a message saying what to do."""
    from transformers import CONFIG_MAPPING

    config = source.config or {}
    model_type = config.get("model_type")
    if model_type is None and "pretrained_cfg" in config:
        return  # a timm export: transformers loads it as TimmWrapperModel (hf-conventions §2)
    if model_type is None:
        raise UnsupportedPriorError(
            f"{source.location!r}: config.json has neither 'model_type' (transformers) nor "
            "'architecture' (timm), so no library can load it."
        )
    if model_type not in CONFIG_MAPPING:
        if config.get("auto_map") and not trust_remote_code:
            raise UnsupportedPriorError(
                f"{source.location!r} (model_type={model_type!r}) needs custom code from its "
                "repository. Read that code, then pass trust_remote_code=True if you trust it."
            )
        if not config.get("auto_map"):
            import transformers

            raise UnsupportedPriorError(
                f"{source.location!r}: model_type {model_type!r} is unknown to transformers "
                f"{transformers.__version__}; upgrade transformers or use another prior."
            )


def _is_clip_vision_with_projection(config: Any) -> bool:
    return config.model_type == "clip" or (
        config.model_type == "clip_vision_model"
        and "CLIPVisionModelWithProjection" in (getattr(config, "architectures", None) or [])
    )


def _takes_no_pixels(model_or_class: Any) -> bool:
    return getattr(model_or_class, "main_input_name", "pixel_values") != "pixel_values"


def _load_transformers(
    source: _Source,
    *,
    pretrained: bool,
    trust_remote_code: bool,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, Any, str | None]:
    """The model, its config, and the pooling rule forced by its type (None: decide by probing)."""
    import transformers
    from transformers import AutoConfig, AutoModel

    _check_transformers_config(source, trust_remote_code)
    config: Any = AutoConfig.from_pretrained(
        source.location, revision=source.revision, trust_remote_code=trust_remote_code
    )
    # transformers 5 loads a checkpoint in its stored dtype ("auto"), fp16 for many CLIP
    # uploads; targets are float32, so load float32 unless the caller asks otherwise.
    model_kwargs = {"dtype": torch.float32, **model_kwargs}

    if _is_clip_vision_with_projection(config):
        # Load only the vision tower + projection. ⚠ CLIPVisionConfig carries projection_dim only
        # in the top-level CLIPConfig; without copying it, CLIPVisionModelWithProjection builds a
        # 512-wide projection and refuses (or reinitialises) the checkpoint's.
        if config.model_type == "clip":
            vision_config = transformers.CLIPVisionConfig(
                **{**config.vision_config.to_dict(), "projection_dim": config.projection_dim}
            )
        else:
            vision_config = config
        model_cls, config, pooling = (
            transformers.CLIPVisionModelWithProjection,
            vision_config,
            "image_embeds",
        )
    else:
        model_cls, pooling = None, None
        mapped: Any
        try:  # the AutoModel class, known before any weights are read
            mapped = transformers.MODEL_MAPPING[type(config)]
        except (KeyError, ValueError):
            mapped = None  # remote code: checked after instantiation below
        if isinstance(mapped, tuple):  # several classes registered: the first is AutoModel's
            mapped = next((cls for cls in mapped if cls is not None), None)
        if mapped is not None and hasattr(mapped, "get_image_features"):
            pooling = "image_features"  # a dual encoder (SigLIP, ALIGN, ...): its image side
        elif mapped is not None and _takes_no_pixels(mapped):
            raise UnsupportedPriorError(
                f"{source.location!r} is not an image model: {mapped.__name__} takes "
                f"{mapped.main_input_name!r}, not pixel_values. A ReLA prior must embed images."
            )

    missing: set[str] = set()
    model: Any
    try:
        if pretrained:
            loader: Any = model_cls or AutoModel
            model, info = loader.from_pretrained(
                source.location,
                config=config,
                output_loading_info=True,
                revision=source.revision,
                trust_remote_code=trust_remote_code,
                **model_kwargs,
            )
            missing = set(info.get("missing_keys", ()))
        else:
            dtype = model_kwargs.pop("dtype")
            if model_cls is not None:
                model = model_cls(config, **model_kwargs)
            else:
                model = AutoModel.from_config(
                    config, trust_remote_code=trust_remote_code, **model_kwargs
                )
            model.to(dtype)
    except TypeError as err:
        if "num_classes" in str(err) and (source.config or {}).get("pretrained_cfg") is not None:
            raise UnsupportedPriorError(
                f"{source.location!r} is a timm export whose config.json lists num_classes in "
                "model_args, which transformers' TimmWrapper cannot load; load it with "
                "library='timm' or delete model_args.num_classes from config.json."
            ) from err
        raise
    except OSError as err:
        raise PriorNotFoundError(
            f"transformers could not load the weights of {source.location!r}: {err}"
        ) from err

    if pooling is None and hasattr(model, "get_image_features"):
        pooling = "image_features"
    if pooling is None and _takes_no_pixels(model):
        raise UnsupportedPriorError(
            f"{source.location!r} is not an image model: {type(model).__name__} takes "
            f"{model.main_input_name!r}, not pixel_values."
        )
    if pooling is None and any(key.startswith("pooler.") or ".pooler." in key for key in missing):
        pooling = "no_pooler"  # the pooler was freshly initialised: never use it
    untrained = sorted(key for key in missing if "pooler" not in key)
    if untrained:
        warnings.warn(
            f"{len(untrained)} weights of the prior {source.location!r} were not in the checkpoint "
            f"and are randomly initialised (e.g. {untrained[:3]}); its embeddings are partly "
            "random.",
            stacklevel=3,
        )
    return model, config, pooling


def _size_dict(value: Any) -> dict[str, Any]:
    """A processor's ``size``/``crop_size`` (a dict, or transformers 5's ``SizeDict``) as a dict."""
    return dict(value) if value else {}


def _processor_input_size(processor: Any) -> tuple[int, int]:
    """(height, width) that a transformers image processor produces."""
    size, crop = (
        _size_dict(getattr(processor, "size", None)),
        _size_dict(getattr(processor, "crop_size", None)),
    )
    if getattr(processor, "do_center_crop", False) and "height" in crop:
        return int(crop["height"]), int(crop["width"])
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    data_config = getattr(processor, "data_config", None)  # TimmWrapperImageProcessor
    if data_config:
        return int(data_config["input_size"][1]), int(data_config["input_size"][2])
    raise UnsupportedPriorError(
        f"Cannot tell the output size of {type(processor).__name__} (size={size!r}); "
        "use preprocessing='official' with an explicit image_size."
    )


def _resize_processor(processor: Any, image_size: int) -> None:
    """Make a transformers image processor produce ``image_size`` squares, keeping its
    resize-to-crop ratio (e.g. DINOv2's 256 -> 224 becomes 73 -> 64 at 64 px)."""
    size, crop = (
        _size_dict(getattr(processor, "size", None)),
        _size_dict(getattr(processor, "crop_size", None)),
    )
    cropping = bool(getattr(processor, "do_center_crop", False)) and "height" in crop
    if cropping and "shortest_edge" in size:
        ratio = size["shortest_edge"] / crop["height"]
        processor.size = {"shortest_edge": round(image_size * ratio)}
        processor.crop_size = {"height": image_size, "width": image_size}
    elif cropping and "height" in size and "width" in size:
        ratio_h, ratio_w = size["height"] / crop["height"], size["width"] / crop["width"]
        processor.size = {
            "height": round(image_size * ratio_h),
            "width": round(image_size * ratio_w),
        }
        processor.crop_size = {"height": image_size, "width": image_size}
    elif "shortest_edge" in size:  # e.g. ConvNeXt: resize to shortest_edge / crop_pct, then crop
        processor.size = {"shortest_edge": image_size}
    elif "height" in size and "width" in size:
        processor.size = {"height": image_size, "width": image_size}
    else:
        raise UnsupportedPriorError(
            f"image_size cannot be applied to {type(processor).__name__} (size={size!r}); use "
            "preprocessing='official', or no image_size to keep the prior's own size."
        )


def _transformers_preprocessing(
    source: _Source,
    config: Any,
    preprocessing: str,
    image_size: int | None,
    trust_remote_code: bool,
) -> tuple[dict[str, Any], Callable[[PIL.Image.Image], torch.Tensor]]:
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(
            source.location, revision=source.revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        if preprocessing == "official" and image_size:
            processor = None
        elif preprocessing == "official":
            size = getattr(config, "image_size", None)
            if not isinstance(size, int):
                raise UnsupportedPriorError(
                    f"{source.location!r} has no image processor and no int image_size in its "
                    "config: pass image_size=..."
                ) from err
            return _official_preprocessing(size), official_transform(size)
        else:
            raise UnsupportedPriorError(
                f"{source.location!r} has no image processor (preprocessor_config.json), so "
                "its own preprocessing is unknown. Save one with the model "
                "(processor.save_pretrained), or use preprocessing='official' (ImageNet "
                "mean/std, resize + centre crop)."
            ) from err
    if preprocessing == "official":
        size = image_size or _processor_input_size(processor)[0]
        return _official_preprocessing(size), official_transform(size)
    if image_size:
        _resize_processor(processor, image_size)
    height, width = _processor_input_size(processor)
    resample = getattr(processor, "resample", None)
    description = {
        "mode": "prior",
        "input_size": [3, height, width],
        "interpolation": (
            PIL.Image.Resampling(resample).name.lower()
            if isinstance(resample, int)
            else str(resample)
        ),
        "resize": _size_dict(getattr(processor, "size", None)),
        "crop_size": (
            _size_dict(getattr(processor, "crop_size", None))
            if getattr(processor, "do_center_crop", False)
            else None
        ),
        "crop_pct": getattr(processor, "crop_pct", None),
        "rescale_factor": getattr(processor, "rescale_factor", None),
        "mean": _jsonable(getattr(processor, "image_mean", None)),
        "std": _jsonable(getattr(processor, "image_std", None)),
        "image_processor": type(processor).__name__,
    }
    data_config = getattr(processor, "data_config", None)  # TimmWrapperImageProcessor
    if data_config:
        description.update(
            interpolation=data_config.get("interpolation"),
            crop_pct=data_config.get("crop_pct"),
            mean=_jsonable(data_config.get("mean")),
            std=_jsonable(data_config.get("std")),
        )
    return description, ImageProcessorTransform(processor)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _transformers_embed_fn(
    model: nn.Module,
    config: Any,
    pooling: str | None,
    input_size: tuple[int, int],
    device: torch.device,
) -> TransformersPooledFeatures:
    """Choose the pooling rule (probing one blank image where the output type decides) and the
    forward kwargs (position-embedding interpolation when the input size differs)."""
    hf_model: Any = model
    forward = hf_model.get_image_features if pooling == "image_features" else hf_model.forward
    # dual encoders (SigLIP, ALIGN, ...) keep the image size in their vision sub-config
    native = getattr(getattr(config, "vision_config", None) or config, "image_size", None)
    native = (native, native) if isinstance(native, int) else tuple(native) if native else None
    kwargs: tuple[tuple[str, Any], ...] = ()
    if (
        native
        and native != input_size
        and "interpolate_pos_encoding" in inspect.signature(forward).parameters
    ):
        kwargs = (("interpolate_pos_encoding", True),)
    if pooling in ("image_features", "image_embeds"):
        return TransformersPooledFeatures(pooling, kwargs)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    probe = torch.zeros(1, 3, *input_size, device=device, dtype=dtype)
    with torch.inference_mode():
        out = model(pixel_values=probe, **dict(kwargs))
    if pooling != "no_pooler" and getattr(out, "pooler_output", None) is not None:
        return TransformersPooledFeatures("pooler", kwargs)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        raise UnsupportedPriorError(
            f"{type(model).__name__} returns neither pooler_output nor last_hidden_state; "
            "cannot take an image embedding from it."
        )
    return TransformersPooledFeatures("cls" if hidden.ndim == 3 else "mean", kwargs)


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------
def _default_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_prior(
    name_or_path: str,
    *,
    revision: str | None = None,
    library: str = "auto",
    preprocessing: str = "prior",
    image_size: int | None = None,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    channels_last: bool = False,
    **model_kwargs: Any,
) -> Prior:
    """Load a public image encoder as a ReLA prior (arXiv:2405.14669, ReLA-D).

    ``library="auto"`` decides from the name:

    - ``hf-hub:<org>/<name>[@rev]`` / ``local-dir:<folder>``: timm, as ``timm.create_model``.
    - an existing folder: timm if its ``config.json`` has ``architecture`` and no ``model_type``
      (a ``save_for_hf`` export), else transformers.
    - a timm registry name (``resnet18``, ``resnet18.a1_in1k``, ``test_resnet``): timm.
    - ``<org>/<name>``: a Hub repo, timm or transformers according to its ``config.json``.

    Args:
        name_or_path: timm name, Hub repo id, or local folder.
        revision: Hub branch, tag or commit; resolved to a commit sha stored in ``Prior.revision``.
        library: ``"auto"``, ``"timm"`` or ``"transformers"`` (forces the loader).
        preprocessing: ``"prior"`` (the prior's own, default) or ``"official"`` (the official
            ReLA code's resize + centre crop + ImageNet mean/std).
        image_size: input size override (square); defaults to the prior's own input size.
        pretrained: ``False`` builds the architecture with random weights (a valid prior too).
        device: where to run; defaults to CUDA when available.
        trust_remote_code: allow transformers to run code from the model repository.
        channels_last: run in channels-last memory format.
        **model_kwargs: passed to ``timm.create_model`` / ``from_pretrained`` / ``from_config``.

    Raises:
        ValueError: invalid ``library``, ``preprocessing`` or ``image_size``.
        PriorNotFoundError: unknown name or folder, missing repo or revision, unreachable Hub.
        UnsupportedPriorError: not an image model, remote code needed, unknown architecture.
    """
    if library not in LIBRARIES:
        raise ValueError(f"library={library!r} is not one of {LIBRARIES}.")
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(
            f"preprocessing={preprocessing!r} is not one of {PREPROCESSING_MODES}: 'prior' uses "
            "the model's own preprocessing, 'official' the official ReLA code's (ImageNet "
            "mean/std)."
        )
    if image_size is not None and (not isinstance(image_size, int) or image_size <= 0):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}.")
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"name_or_path must be a non-empty string, got {name_or_path!r}.")
    target_device = _default_device(device)
    source = _locate(name_or_path, library, revision)

    if source.library == "timm":
        model, resolved_revision, description, transform = _load_timm(
            source,
            preprocessing=preprocessing,
            image_size=image_size,
            pretrained=pretrained,
            model_kwargs=model_kwargs,
        )
        embed_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = TimmPooledFeatures()
    else:
        model, config, pooling = _load_transformers(
            source,
            pretrained=pretrained,
            trust_remote_code=trust_remote_code,
            model_kwargs=model_kwargs,
        )
        resolved_revision = source.revision
        description, transform = _transformers_preprocessing(
            source, config, preprocessing, image_size, trust_remote_code
        )
        model.eval().to(target_device)
        embed_fn = _transformers_embed_fn(
            model, config, pooling, tuple(description["input_size"][1:]), target_device
        )

    model.eval().requires_grad_(False).to(target_device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    prior = Prior(
        model=model,
        name=name_or_path,
        # randomly initialised weights come from no commit (and fingerprint by their values)
        revision=resolved_revision if pretrained else None,
        library=source.library,
        embed_dim=0,
        preprocessing=description,
        transform=transform,
        device=target_device,
        embed_fn=embed_fn,
        channels_last=channels_last,
        pretrained=pretrained,
    )
    prior.embed_dim = _probe_embed_dim(prior)
    return prior


def _probe_embed_dim(prior: Prior) -> int:
    """Width of the embedding, from one forward pass on a blank input of the configured size.

    Also fails early, with a clear message, when the model cannot run at that size.
    """
    _, height, width = prior.preprocessing["input_size"]
    try:
        out = prior.embed(torch.zeros(1, 3, height, width))
    except Exception as err:  # re-raised with the context a user needs
        raise UnsupportedPriorError(
            f"The prior {prior.name!r} failed on a {height}x{width} input ({type(err).__name__}: "
            f"{err}). Check image_size, or that the model is an image encoder."
        ) from err
    if out.ndim != 2:
        raise UnsupportedPriorError(
            f"The prior {prior.name!r} returned embeddings of shape {tuple(out.shape)}, not "
            "[B, D]; pass global_pool (timm) or use a model with pooled outputs."
        )
    return int(out.shape[1])
