"""The report page's environment and provenance section (``html`` module docstring, item 6):
ntkdyn version, git commit and whether the tree was dirty, torch, numpy, devices, the
experiments' dtypes, platform, python, the ``H^inf`` spectrum, then the experiments."""

from __future__ import annotations

from ._html_parts import esc, num, table, value

__all__ = ["environment_section"]


def _settings(experiments: dict, key: str) -> str:
    """``value (experiment ids)`` for a config key over the experiments, e.g. their dtypes."""
    users: dict[str, list[str]] = {}
    for eid, e in sorted(experiments.items()):
        vals = e.get(key)
        for v in vals if isinstance(vals, (list, tuple)) else [vals]:
            if v is not None:
                users.setdefault(str(v), []).append(str(eid))
    return "; ".join(f"{esc(v)} ({esc(', '.join(ids))})" for v, ids in sorted(users.items()))


def _devices(env: dict, experiments: dict) -> str:
    devices = env.get("devices")
    if isinstance(devices, dict) and devices:
        text = ", ".join(f"{esc(k)} &rarr; {esc(v)}" for k, v in sorted(devices.items()))
    else:
        text = _settings(experiments, "device")
        text = f"{text} (as requested)" if text else ""
    if env.get("cuda_device"):
        text += f"; {esc(env['cuda_device'])}"
    return text


_NOT_RECORDED = '<span class="muted">not recorded</span>'
_DIRTY = {True: "yes", False: "no", None: "unknown"}


def environment_section(summary: dict, experiments: dict) -> str:
    """The environment and provenance table, then the experiments' config table."""
    env = summary.get("environment") or {}
    commit = env.get("git_commit")
    rows = [
        ("ntkdyn version", esc(env["ntkdyn"]) if "ntkdyn" in env else _NOT_RECORDED),
        (
            "git commit",
            (esc(commit) if commit else "none (git missing or not a checkout)")
            if "git_commit" in env
            else _NOT_RECORDED,
        ),
        (
            "uncommitted changes",
            esc(_DIRTY.get(env["git_dirty"], env["git_dirty"]))
            if "git_dirty" in env
            else _NOT_RECORDED,
        ),
        ("torch", esc(env["torch"]) if "torch" in env else _NOT_RECORDED),
        ("numpy", esc(env["numpy"]) if "numpy" in env else _NOT_RECORDED),
        ("device(s)", _devices(env, experiments) or _NOT_RECORDED),
        ("dtype(s)", _settings(experiments, "dtype") or _NOT_RECORDED),
        ("platform", esc(env["platform"]) if "platform" in env else _NOT_RECORDED),
        ("python", esc(env["python"]) if "python" in env else _NOT_RECORDED),
    ]
    shown = {
        "ntkdyn",
        "git_commit",
        "git_dirty",
        "torch",
        "numpy",
        "devices",
        "cuda_device",
        "platform",
        "python",
    }
    rows += [(str(k), value(v)) for k, v in sorted(env.items()) if k not in shown]
    k = summary.get("kernel")
    if k:
        spectrum = (
            f"n = {num(k.get('n'))}, lambda_min = {num(k.get('lambda_min'))}, "
            f"lambda_max = {num(k.get('lambda_max'))}"
        )
        rows.append((f"kernel H^inf ({k.get('key')})", spectrum))
    body = "".join(f"<tr><td>{esc(a)}</td><td>{b}</td></tr>" for a, b in rows)
    env_table = f'<table class="env"><tbody>{body}</tbody></table>'
    exp_rows = [
        f"<tr><td>{esc(eid)}</td><td>{esc(e.get('kind'))}</td><td>{esc(e.get('mode'))}</td>"
        f"<td>{value(e.get('data'))}</td><td>{value(e.get('dtype'))}</td>"
        f"<td>{value(e.get('device'))}</td><td>{esc(e.get('title'))}</td></tr>"
        for eid, e in sorted(experiments.items())
    ]
    exps = table(["experiment", "kind", "mode", "data", "dtype", "device", "title"], exp_rows)
    return env_table + "<h3>Experiments</h3>" + exps
