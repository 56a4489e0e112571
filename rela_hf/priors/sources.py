"""Locating a prior: which loader reads a name, and from where (Hub, folder, timm registry).

Names are parsed once by :func:`rela_hf.model_names.parse_model_name`; this module adds what a
prior needs on top: the ``config.json`` that tells the library (fetched from the Hub, pinning the
commit sha), and the checks that make a wrong name fail with a message that says what to do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import timm
import timm.models
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub import errors as hub_errors

from rela_hf.model_names import ModelName, ModelNameError, parse_model_name
from rela_hf.priors.prior import PriorNotFoundError, PriorSource, UnsupportedPriorError
from rela_hf.priors.registry import choose_library

__all__ = ["download_hub_config", "is_timm_config", "locate_prior", "resolve_timm_registry_revision"]

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def is_timm_config(config: dict[str, Any]) -> bool:
    """timm exports (``save_for_hf``) have ``architecture`` and no ``model_type``."""
    return "model_type" not in config and "architecture" in config


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UnsupportedPriorError(f"{path} is not valid JSON ({err}); cannot tell what model it is.") from err


def _hub_endpoint() -> str:
    return constants.ENDPOINT


def download_hub_config(repo_id: str, revision: str | None) -> tuple[dict[str, Any], str]:
    """Fetch ``config.json`` of a Hub model and the commit sha it came from.

    One request for an uncached repo, none for a commit already in the cache. The sha is the name
    of the cache's snapshot folder (``.../snapshots/<sha>/config.json``); if the cache layout ever
    differs, ``model_info`` is asked instead.
    """
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
            f"The Hub repository {where} has no config.json, so it is neither a timm nor a transformers model."
        ) from err
    except (hub_errors.HfHubHTTPError, hub_errors.OfflineModeIsEnabled, OSError) as err:
        raise PriorNotFoundError(f"Could not download {where} from the Hub ({_hub_endpoint()}): {err}") from err
    sha: str | None = path.parent.name
    if not _COMMIT_SHA.fullmatch(sha or ""):
        sha = HfApi().model_info(repo_id, revision=revision).sha
    if sha is None:
        raise PriorNotFoundError(f"The Hub did not report a commit sha for {where}.")
    return read_json(path), sha


def resolve_timm_registry_revision(name: str, revision: str | None) -> tuple[str | None, str | None]:
    """For a pretrained timm registry name whose weights live on the Hub: (hf_hub_id, sha)."""
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        if revision is not None:
            raise ValueError(f"revision={revision!r} was given but timm's {name!r} weights do not come from the Hub.")
        return None, None
    hub_id, _, cfg_revision = hub_id.partition("@")
    # timm's Hub repos carry a config.json: fetching it (or finding it in the cache, offline)
    # names the commit that the weights will come from.
    _, sha = download_hub_config(hub_id, revision or cfg_revision or None)
    return hub_id, sha


def _folder_source(folder: Path, library: str) -> PriorSource:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise PriorNotFoundError(
            f"The folder {folder} has no config.json: save the model there with timm's "
            "save_for_hf or transformers' save_pretrained first."
        )
    config = read_json(config_path)
    chosen = choose_library(config, library, str(folder))
    return PriorSource(chosen, f"local-dir:{folder}" if chosen == "timm" else str(folder), None, config)


def _timm_prefixed_source(name: str, parsed: ModelName, library: str) -> PriorSource:
    """``local-dir:<folder>`` or ``hf-hub:<org>/<name>[@revision]``: timm's own syntax asks for timm."""
    if library == "transformers":
        raise ValueError(
            f"{name!r} uses a timm source prefix; drop the prefix to load it with transformers, or use library='timm'."
        )
    if parsed.kind == "folder":
        if not (parsed.path / "config.json").is_file():
            raise PriorNotFoundError(f"{name!r}: no timm model folder (config.json) at {parsed.path}.")
        config = read_json(parsed.path / "config.json")
        choose_library(config, "timm", str(parsed.path))
        return PriorSource("timm", f"local-dir:{parsed.path}", None, config)
    config, sha = download_hub_config(parsed.id, parsed.revision)
    choose_library(config, "timm", f"The Hub repo {parsed.id!r}")
    return PriorSource("timm", f"hf-hub:{parsed.id}@{sha}", sha, config)


def locate_prior(name: str, library: str, revision: str | None) -> PriorSource:
    """Decide which library loads ``name`` and from where (see :func:`rela_hf.priors.load_prior`).

    An existing folder wins over a registry name or Hub id of the same spelling, as in
    transformers' ``from_pretrained``.
    """
    try:
        parsed = parse_model_name(name, revision=revision)
    except ModelNameError as error:
        message = str(error)
        if "revision" in message:
            raise ValueError(message) from error
        raise PriorNotFoundError(message) from error
    if parsed.timm_prefixed:
        return _timm_prefixed_source(name, parsed, library)
    if parsed.kind == "folder":
        return _folder_source(parsed.path, library)
    if parsed.kind == "registry" and library != "transformers":
        if timm.is_model(timm.models.split_model_name_tag(name)[0]):
            return PriorSource("timm", name, revision, None)
        raise PriorNotFoundError(
            f"{name!r} is not a timm model name (see timm.list_models()) nor an existing folder. "
            "Hub models are '<org>/<name>' (or 'hf-hub:<org>/<name>' for timm); for a Hub model "
            "without an organisation pass library='transformers'."
        )
    config, sha = download_hub_config(parsed.id, parsed.revision)
    chosen = choose_library(config, library, f"The Hub repo {parsed.id!r}")
    return PriorSource(chosen, f"hf-hub:{parsed.id}@{sha}" if chosen == "timm" else parsed.id, sha, config)
