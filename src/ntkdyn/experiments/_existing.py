"""What a sweep may do with the store already in its ``--out`` directory.

Run ids are content hashes of the run configs (``runs.run_id``), so a store can grow: a config
that keeps every finished run of the store and adds others *extends* it (``--resume`` trains
only the new runs, the meta takes the new config). A finished run the config no longer has
(its settings changed, so its id did, or it was removed) is never deleted silently: the sweep
is refused with the ids involved. Without ``--resume`` or ``--fresh`` a store holding finished
runs is refused; ``--resume`` on data whose content changed is refused
(:func:`check_data_hashes`, against the ``data_hashes`` meta that :func:`data_hashes` writes).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from .config import RunData
from .runs import DataCache
from .store import Store

__all__ = ["check_data_hashes", "check_existing", "data_hashes", "id_preview"]

#: Ids named in a message before "and N more".
_IDS_SHOWN = 5


def id_preview(ids: Collection[str]) -> str:
    """``a, b, c and 7 more`` (sorted)."""
    ordered = sorted(ids)
    shown = ", ".join(ordered[:_IDS_SHOWN])
    rest = len(ordered) - _IDS_SHOWN
    return shown + (f" and {rest} more" if rest > 0 else "")


def check_existing(
    existing: Store,
    out: Path,
    config_json: str,
    run_ids: Collection[str],
    data: tuple[Mapping, Mapping[str, str]],
    *,
    resume: bool,
    fresh: bool,
) -> set[str]:
    """The ids of the finished runs of ``existing`` (read and verified once), after refusing
    what the module docstring refuses. ``data``: specs and content hashes by data key."""
    meta = existing.meta()
    done = existing.finished_ids()
    stored = meta.get("config")
    extends = stored is not None and stored != config_json
    if extends:
        gone = done - set(run_ids)
        if gone:
            name = json.loads(stored).get("name", "?")  # type: ignore[arg-type]
            raise ValueError(
                f"`--out` {str(out)!r} holds {len(gone)} finished runs of config {name!r} that "
                f"this config does not have (ids {id_preview(gone)}): a run whose settings "
                "changed gets a new id, and finished runs are never deleted silently; keep "
                "their settings in the config, or use another --out directory"
            )
    if done and resume:
        check_data_hashes(meta.get("data_hashes"), data[1], data[0], str(out))
    if done and not (resume or fresh):
        new = len(set(run_ids) - done)
        what = f"this config also has (it adds {new} runs)" if extends else "of this config"
        raise ValueError(
            f"`--out` {str(out)!r} holds {len(done)} finished runs {what}: add --resume to keep "
            "them and train the rest, or --fresh to delete them and start over"
        )
    return done


def data_hashes(specs: Iterable[RunData], cache: DataCache) -> dict[str, str]:
    """Data key -> ``Dataset.content_hash`` of the data its runs train on."""
    return {spec.key: cache.dataset(spec).content_hash() for spec in specs}


def check_data_hashes(
    stored: str | None, current: Mapping[str, str], specs: Mapping[str, RunData], out: str
) -> None:
    """Refuse to resume on data that differ from those the finished runs trained on.

    ``stored`` is the store's ``data_hashes`` meta (JSON); None (an older store) or a key
    missing from it is accepted: there is nothing to compare with.
    """
    if stored is None:
        return
    try:
        before = json.loads(stored)
    except ValueError:
        before = None
    if not isinstance(before, dict):
        raise ValueError(
            f"`data_hashes` of the store in `--out` {out!r} is not a JSON table; "
            "use --fresh or another --out directory"
        )
    for key, digest in current.items():
        if key in before and before[key] != digest:
            from ..data import parse_data_spec

            path = parse_data_spec(specs[key].data).path
            where = f" (file {path!r})" if path is not None else ""
            raise ValueError(
                f"`data` {specs[key].data!r}{where} changed since the finished runs in "
                f"`--out` {out!r} were trained (content sha256 {str(before[key])[:12]}... is "
                f"now {digest[:12]}...); use --fresh to delete those runs and train again, or "
                "another --out directory"
            )
