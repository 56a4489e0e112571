"""Reading the licence of a dataset or a model from where it lives: its card, its metadata.

- A Hub dataset or model: the ``license`` of its card (``README.md`` at the pinned revision,
  read with :class:`huggingface_hub.DatasetCard` / :class:`~huggingface_hub.ModelCard`); a timm
  repo without one: ``pretrained_cfg['license']`` of its ``config.json``.
- A timm registry name (``resnet50.a1_in1k``): timm's ``pretrained_cfg['license']``.
- A local folder: its ``README.md`` card, else ``dataset_info.json`` (``datasets``'
  ``DatasetInfo.license``, written by ``save_to_disk``) or ``config.json`` (timm's
  ``pretrained_cfg``).

Nothing here raises for a licence it cannot read: the answer is then ``unknown`` with the reason
in :attr:`~rela_hf.licenses.License.source`, and :func:`rela_hf.licenses.derive_license` makes
the card say so.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, ModelCard, RepoCard, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from timm.models import get_pretrained_cfg

from rela_hf.licenses import UNKNOWN_LICENSE, License, LicenseInput, derive_license, parse_license
from rela_hf.public_names import public_name

__all__ = ["dataset_license", "model_license"]

_CARD = "README.md"
# what a Hub read can raise when the repo, file or network is not there (never a licence error)
_HUB_ERRORS = (HfHubHTTPError, OSError, ValueError)


def _unknown(why: str) -> License:
    return dataclasses.replace(UNKNOWN_LICENSE, source=why)


def _from_card_data(data: Any, source: str) -> License:
    """The licence in a card's metadata; a list of licences (mixed content) combined."""
    value = getattr(data, "license", None)
    name, link = getattr(data, "license_name", None), getattr(data, "license_link", None)
    if isinstance(value, (list, tuple)):
        parts = [LicenseInput("part", str(v), parse_license(v, name=name, link=link)) for v in value]
        if not parts:
            return _unknown(f"{source} names no licence")
        combined = derive_license(parts).license
        return (
            dataclasses.replace(combined, source=source)
            if combined.known
            else _unknown(f"{source} lists licences rela-hf cannot combine ({', '.join(map(str, value))})")
        )
    if not value:
        return _unknown(f"{source} names no licence")
    if value == "unknown":
        return _unknown(f"{source} says `unknown`")
    return parse_license(value, name=name, link=link, source=source)


def _read_card(path: Path, card_class: type[RepoCard], source: str) -> License:
    try:
        card = card_class.load(path, ignore_metadata_errors=True)
    except (OSError, ValueError) as error:
        return _unknown(f"{source} could not be read ({type(error).__name__})")
    return _from_card_data(card.data, source)


def _hub_file(repo_id: str, filename: str, repo_type: str, revision: str | None) -> Path | None:
    try:
        return Path(hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision))
    except _HUB_ERRORS:
        return None


def _local_dataset_license(folder: Path, name: str) -> License:
    card = _unknown(f"the local folder `{name}` records no licence")
    if (folder / _CARD).is_file():
        card = _read_card(folder / _CARD, DatasetCard, f"the card of the local folder `{name}`")
        if card.known:
            return card
    # save_to_disk: dataset_info.json in the folder (Dataset) or in each split's (DatasetDict)
    for info_file in [folder / "dataset_info.json", *sorted(folder.glob("*/dataset_info.json"))]:
        if info_file.is_file():
            try:
                license_text = json.loads(info_file.read_text(encoding="utf-8")).get("license")
            except (OSError, ValueError):
                continue
            if license_text:
                return parse_license(license_text, source=f"the DatasetInfo of the local folder `{name}`")
    return card


def dataset_license(dataset: str | None, *, revision: str | None = None) -> License:
    """The licence of a dataset: a Hub id (its card at ``revision``) or a local folder.

    Returns ``unknown`` (with the reason as ``source``) when none can be read.
    """
    if not dataset:
        return _unknown("the dataset is not recorded")
    public = public_name(dataset)
    if public.local and public.hub_id is None:
        folder = Path(
            dataset.split(":", 1)[-1] if dataset.startswith(("local-dir:", "offline:")) else dataset
        ).expanduser()
        if not folder.is_dir():
            return _unknown(f"the local folder `{public.name}` is not on this machine")
        return _local_dataset_license(folder, public.name)
    if public.hub_id is None:
        return _unknown(f"`{public.name}` is not a Hub dataset id (org/name)")
    card = _hub_file(public.hub_id, _CARD, "dataset", revision or public.revision)
    if card is None:
        return _unknown(f"no Hub dataset card of `{public.hub_id}` could be read")
    return _read_card(card, DatasetCard, f"the Hub dataset card of `{public.hub_id}`")


def _timm_config_license(config_file: Path | None, source: str) -> License:
    if config_file is None or not config_file.is_file():
        return _unknown(f"no card licence or config.json of {source} could be read")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _unknown(f"the config.json of {source} could not be read")
    license_text = (config.get("pretrained_cfg") or {}).get("license")
    if not license_text:
        return _unknown(f"{source} records no licence")
    return parse_license(license_text, source=f"the pretrained_cfg of {source}")


def _registry_license(name: str) -> License:
    try:
        cfg = get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        cfg = None
    if cfg is None or not cfg.license:
        return _unknown(f"timm records no licence for `{name}`")
    return parse_license(cfg.license, source=f"timm's pretrained_cfg of `{name}`")


def model_license(model: str | None, *, revision: str | None = None) -> License:
    """The licence of a model's weights: a Hub id, ``hf-hub:``, a timm name or a local folder."""
    if not model:
        return _unknown("the model is not recorded")
    public = public_name(model)
    if public.local and public.hub_id is None:
        folder = Path(model.removeprefix("local-dir:")).expanduser()
        if not folder.is_dir():
            return _unknown(f"the local folder `{public.name}` is not on this machine")
        source = f"the local folder `{public.name}`"
        if (folder / _CARD).is_file():
            found = _read_card(folder / _CARD, ModelCard, f"the card of {source}")
            if found.known:
                return found
        return _timm_config_license(folder / "config.json", source)
    if public.hub_id is None:
        return _registry_license(model.removeprefix("timm:"))
    revision = revision or public.revision
    card = _hub_file(public.hub_id, _CARD, "model", revision)
    if card is not None:
        found = _read_card(card, ModelCard, f"the Hub model card of `{public.hub_id}`")
        if found.known:
            return found
    config = _hub_file(public.hub_id, "config.json", "model", revision)
    return _timm_config_license(config, f"`{public.hub_id}`")
