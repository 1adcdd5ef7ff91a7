"""Stages ``relsum scores stats`` and ``relsum scores prune``: look after the persistent score store.

The store (:mod:`relsum.scoring.store`) grows by one part per scoring call and keeps one folder per
scorer fingerprint; old fingerprints (retired models, configs, paths) are never read again. ``stats``
shows what is there; ``prune`` drops fingerprints that are not kept or not written for N days and
compacts what remains into one part per fingerprint (fewer files, faster loads).

Both refuse a folder that is not a score store (no marker file, no fingerprint folder of parts) and
touch only folders that are store entries by their content: anything else in the root is listed and
left alone (see :mod:`relsum.scoring.store_layout`). Damaged parts are counted by ``stats`` and
dropped by ``prune``'s compaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from relsum.pipelines.configs import PruneConfig, StatsConfig

logger = logging.getLogger(__name__)


def _root(store_dir: str | None) -> Path:
    from relsum.scoring.store import default_root

    return Path(store_dir) if store_dir else default_root()


def stats(config: StatsConfig) -> list[dict]:
    """One row per fingerprint: rows, parts, damaged parts, bytes, last_write (ISO, UTC) and gate results."""
    from relsum.scoring.store import fingerprint_stats
    from relsum.scoring.store_layout import checked_entries

    out = []
    for folder in checked_entries(_root(config.store_dir), "scores stats")[0]:
        row = fingerprint_stats(folder)
        if row["last_write"]:
            row["last_write"] = datetime.fromtimestamp(row["last_write"], UTC).isoformat(timespec="seconds")
        out.append(row)
    return out


def auto_choices(config: StatsConfig) -> list[dict]:
    """The cached ``path: auto`` choices (newest first) with each candidate's measured figures."""
    from relsum.scoring.auto_path import list_choices

    return list_choices(_root(config.store_dir))


def format_stats(rows: list[dict], choices: list[dict] | None = None) -> str:
    """The fingerprint table (with the path each one is scored on and why), then the auto choices."""
    from relsum.scoring.auto_path import format_choice

    lines = [f"{'fingerprint':<16} {'rows':>10} {'parts':>6} {'damaged':>7} {'MiB':>9}  {'last write':<25} "
             f"{'path':<16} why"]
    for r in rows:
        lines.append(f"{r['fingerprint'][:16]:<16} {r['rows']:>10} {r['parts']:>6} {r.get('damaged', 0):>7} "
                     f"{r['bytes'] / 2**20:>9.2f}  {r['last_write'] or '-':<25} {r.get('path', '?'):<16} "
                     f"{r.get('path_reason', '')[:160]}")
    for choice in choices or []:
        lines += ["", format_choice(choice)]
    return "\n".join(lines)


def prune(config: PruneConfig) -> dict:
    """Remove fingerprints not in ``keep`` / older than ``older_than_days``; compact the rest.

    Only store entries are candidates; other folders in the root are reported under ``left_alone``.
    """
    from relsum.scoring.store import compact, fingerprint_stats, iter_older_than, remove_fingerprint
    from relsum.scoring.store_layout import checked_entries, write_marker

    folders, foreign = checked_entries(_root(config.store_dir), "scores prune")
    if folders and not config.dry_run:  # a store written before the marker existed: mark it now
        write_marker(_root(config.store_dir))
    doomed = set()
    if config.keep:
        unknown = set(config.keep) - {f.name for f in folders}
        if unknown:
            logger.warning("kept fingerprints not in the store: %s", sorted(unknown))
        doomed |= {f for f in folders if f.name not in set(config.keep)}
    if config.older_than_days is not None:
        doomed |= set(iter_older_than(folders, config.older_than_days))
    removed, compacted = sorted(f.name for f in doomed), {}
    if not config.dry_run:
        for folder in sorted(doomed):
            remove_fingerprint(folder)
    damaged = {}
    for folder in folders:
        if folder in doomed or not config.compact:
            continue
        if config.dry_run:  # what compaction would drop, as far as the parts' footers tell
            if n := fingerprint_stats(folder)["damaged"]:
                damaged[folder.name] = n
        else:
            compacted[folder.name] = compact(folder)
            if n := len(compacted[folder.name].get("damaged_parts", [])):
                damaged[folder.name] = n
    logger.info("score store: removed %d fingerprint(s), compacted %d", len(removed), len(compacted))
    return {"removed": removed, "compacted": compacted, "damaged_parts": damaged,
            "left_alone": sorted(foreign), "dry_run": config.dry_run}
