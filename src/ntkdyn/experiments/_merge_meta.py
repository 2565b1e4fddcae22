"""The meta of a merged store (``merge``): the config's differences for a refusal, the data
content hashes, the sources' environments united in an order of their own, and the count of
the config's runs. Functions of the stores' meta dicts (strings, JSON values) only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._setup import now

__all__ = [
    "MERGED_FROM",
    "differences",
    "distinct_environments",
    "expected_runs",
    "hashes_of",
    "merged_meta",
    "missing_shards",
]

#: The key under which a merged environment lists the sources' differing environments.
MERGED_FROM = "merged_from"

Meta = dict[str, str]


def differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two JSON values differ, as ``path: a vs b`` lines (in key order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            line
            for k in sorted(set(a) | set(b))
            for line in differences(a.get(k), b.get(k), f"{at}.{k}" if at else str(k))
        ]
    same_length = isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
    if same_length and all(isinstance(x, dict) for x in a + b):
        pairs = enumerate(zip(a, b, strict=True))
        return [line for i, (x, y) in pairs for line in differences(x, y, f"{at}[{i}]")]
    return [] if a == b else [f"{at or 'config'}: {json.dumps(a)} vs {json.dumps(b)}"]


def hashes_of(meta: Meta) -> dict[str, str]:
    """Data key -> content hash (none in a store written before they were recorded)."""
    text = meta.get("data_hashes")
    return json.loads(text) if text else {}


def _environments(meta: Meta) -> list[dict]:
    """The environments a store records: its own, or those a merge listed."""
    try:
        env = json.loads(meta.get("environment", "{}"))
    except json.JSONDecodeError:
        env = {"raw": meta.get("environment")}
    if not isinstance(env, dict):
        env = {"raw": env}
    listed = env.get(MERGED_FROM)
    return list(listed) if isinstance(listed, list) else [env]


def distinct_environments(metas: Sequence[Meta]) -> list[dict]:
    """Every distinct environment, ordered by its canonical JSON (not by source order)."""
    found = {json.dumps(e, sort_keys=True): e for m in metas for e in _environments(m)}
    return [found[k] for k in sorted(found)]


def _merged_environment(metas: Sequence[Meta]) -> dict:
    """The one environment when all agree; else the entries they share, and under
    :data:`MERGED_FROM` every distinct one (so merging a merged store again changes nothing)."""
    envs = distinct_environments(metas)
    if len(envs) == 1:
        return envs[0]
    first, rest = envs[0], envs[1:]
    shared = {k: v for k, v in first.items() if all(k in e and e[k] == v for e in rest)}
    return {**shared, MERGED_FROM: envs}


def merged_meta(metas: Sequence[Meta]) -> Meta:
    """The meta a merge writes: the (common) config, the union of the data hashes, the united
    environment, the earliest ``created`` and ``updated`` = now. A source's ``shard`` and any
    other entry are not copied."""
    hashes: dict[str, str] = {}
    for meta in metas:
        hashes.update(hashes_of(meta))
    # ISO 8601 UTC stamps of one format: their text order is their time order.
    created = sorted(m["created"] for m in metas if "created" in m)
    out = {
        "config": metas[0]["config"],
        "environment": json.dumps(_merged_environment(metas), sort_keys=True),
        "created": created[0] if created else now(),
        "updated": now(),
    }
    if hashes:
        out["data_hashes"] = json.dumps(hashes, sort_keys=True)
    return out


def expected_runs(config_json: str) -> int | None:
    """Runs of a stored (normalised) config: optimizers x widths x seeds per experiment (a
    config listing a run twice is refused when expanded, so this is exact); None when the
    config cannot be read so."""
    try:
        experiments = json.loads(config_json)["experiments"]
        return sum(len(e["optimizers"]) * len(e["widths"]) * len(e["seeds"]) for e in experiments)
    except (KeyError, TypeError, ValueError):
        return None


def missing_shards(shards: Sequence[str]) -> str:
    """``" (shards 2/3 not merged)"`` when every merged shard names the same N, else ``""``."""
    try:
        pairs = {(int(s.split("/")[0]), int(s.split("/")[1])) for s in shards}
    except (ValueError, IndexError):
        return ""
    counts = {n for _, n in pairs}
    if len(counts) != 1:
        return ""
    (n,) = counts
    missing = [f"{i}/{n}" for i in range(1, n + 1) if (i, n) not in pairs]
    return f" (shards {', '.join(missing)} not merged)" if missing else ""
