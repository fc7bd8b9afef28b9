"""Result tables: the fixed-width console table of a run's evaluations and the sweep's
markdown table of HTER / AUC over seeds."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

DEFAULT_TABLE_COLUMNS = (
    "name",
    "num_live",
    "num_spoof",
    "auc",
    "eer",
    "hter",
    "acer",
    "tpr@fpr=0.01",
)

_RATE_HEADERS = {
    "auc": "AUC%",
    "eer": "EER%",
    "hter": "HTER%",
    "apcer": "APCER%",
    "bpcer": "BPCER%",
    "acer": "ACER%",
    "far": "FAR%",
    "frr": "FRR%",
    "source_val_auc": "SrcValAUC%",
    # The target's rates at the threshold chosen on source-val (metrics.evaluate): deployable.
    "deploy_apcer": "APCER%(src-val thr)",
    "deploy_bpcer": "BPCER%(src-val thr)",
    "deploy_acer": "ACER%(src-val thr)",
}
# Rates at the policy threshold: their header names the policy (the same HTER means different things).
_POLICY_RATES = {"hter", "apcer", "bpcer", "acer", "far", "frr"}


def _is_rate(key: str) -> bool:
    return key in _RATE_HEADERS or key.startswith("tpr@fpr=")


def _header(key: str, rows: Sequence[Mapping[str, Any]]) -> str:
    if key.startswith("tpr@fpr="):
        try:
            return f"TPR%@FPR={float(key.split('=', 1)[1]) * 100:g}%"
        except ValueError:
            return key
    if key in _RATE_HEADERS:
        head = _RATE_HEADERS[key]
        if key in _POLICY_RATES:
            policies = {r.get("threshold_policy") for r in rows if key in r}
            if len(policies) == 1 and None not in policies:
                head += f"({policies.pop()})"
        return head
    return key


def _cell(key: str, row: Mapping[str, Any], mixed_policy: bool) -> str:
    if key not in row or row[key] is None:
        return "-"
    v = row[key]
    if _is_rate(key) and isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        text = f"{float(v) * 100:.2f}"
        if mixed_policy and key in _POLICY_RATES and row.get("threshold_policy"):
            text += f"({row['threshold_policy']})"
        return text
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4f}"
    return str(v)


def format_results_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
) -> str:
    """A fixed-width text table of :func:`evaluate` results (plus e.g. a ``name`` key) for the console.

    Rates are printed in percent with 2 decimals, as FAS papers print them. HTER/ACER/APCER/... carry
    their threshold policy: in the header (``HTER%(target_eer)``) when all rows share it, otherwise in
    each cell. With ``columns=None`` the :data:`DEFAULT_TABLE_COLUMNS` present in some row are shown;
    explicitly requested columns are always shown (``-`` where a row lacks the key).
    """
    rows = list(rows)
    if columns is None:
        columns = [c for c in DEFAULT_TABLE_COLUMNS if any(c in r for r in rows)]
    columns = list(columns)
    if not columns:
        return ""
    policies = {r.get("threshold_policy") for r in rows}
    mixed_policy = len(policies) > 1
    headers = [_header(c, rows) for c in columns]
    body = [[_cell(c, r, mixed_policy) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(line[j]) for line in body]) for j, h in enumerate(headers)]

    # Numbers right-aligned, text (names, policies) left-aligned.
    numeric = [
        all(
            isinstance(r.get(c), (int, float, np.number)) and not isinstance(r.get(c), bool)
            for r in rows
            if r.get(c) is not None
        )
        and any(r.get(c) is not None for r in rows)
        for c in columns
    ]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[j]) if numeric[j] else cell.ljust(widths[j])
            for j, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines.extend(fmt(line) for line in body)
    return "\n".join(lines)


# Sweep tables (python -m dtda_jax.experiments)


CONVENTION_TITLES = {
    "paper": "Paper convention: threshold at the target's own EER, the checkpoint that was best on the "
             "target (what the literature reports; it uses the target's labels)",
    "deployable": "Deployable convention: the last checkpoint, HTER (= ACER) at the threshold chosen on "
                  "the source domains' held-out videos (their EER); no target label used",
}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _mean_std_text(figure: dict) -> str:
    spread = f" +- {_pct(figure['std'])}" if figure["n"] > 1 else ""
    return f"{_pct(figure['mean'])}{spread}"


def _cell_text(cell: dict | None) -> str:
    if cell is None:
        return "-"
    return f"{_mean_std_text(cell['hter'])} / {_mean_std_text(cell['auc'])} (n={cell['hter']['n']})"


def _interval_text(figure: dict) -> str:
    return f"{_mean_std_text(figure)} [{_pct(figure['low'])}, {_pct(figure['high'])}]"


def _difference_text(diff: dict | None) -> str:
    """"-3.10 [-5.20, -1.05]", in bold when the interval excludes 0 (established)."""
    if diff is None:
        return "(baseline)"
    text = f"{100 * diff['mean']:+.2f} [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}]"
    return f"**{text}**" if diff["established"] else text


def markdown_table(table: dict) -> str:
    """The sweep's tables: per convention, variants x protocols (HTER / AUC mean +- std over
    seeds); then per protocol, both conventions with 95% bootstrap intervals and the paired
    difference of each variant to the baseline."""
    lines = [f"Run settings: HTER threshold `{p['threshold_policy']}`, model selection `{p['selection']}`, "
             f"video score `{p['video_reduce']}` of frame live probabilities." for p in table["policies"]]
    lines.append("Both conventions are recomputed from every run's saved per-video scores. Cells: "
                 "HTER % / AUC %, mean +- std over seeds (n = seeds).")
    for convention, title in CONVENTION_TITLES.items():
        lines += ["", f"**{title}.**", "", *_variant_rows(table, convention)]
    level = round(100 * table["level"])
    for protocol in table["protocols"]:
        cells = {c["variant"]: c for c in table["cells"] if c["protocol"] == protocol}
        if not cells:
            continue
        seeds = next(iter(cells.values()))["seeds"]
        baseline = table["baseline"] if table["baseline"] in cells else None
        heading = (f"**{protocol}: {level}% bootstrap intervals** (over target and source-val videos and "
                   f"over seeds {', '.join(map(str, seeds))}; {table['replicates']} replicates)")
        if baseline:
            heading += (f", and the paired difference to `{baseline}` (same seeds, same videos; **bold**: "
                        "its interval excludes 0)")
        lines += ["", heading + ".", ""]
        header = ["variant"]
        for convention in CONVENTION_TITLES:
            header += [f"HTER % {convention}", "diff", f"AUC % {convention}", "diff"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for variant, cell in cells.items():
            row = [variant]
            for convention in CONVENTION_TITLES:
                figures = cell[convention]
                diff = figures["diff"] or {}
                row += [_interval_text(figures["hter"]),
                        _difference_text(diff.get("hter")) if baseline else "-",
                        _interval_text(figures["auc"]),
                        _difference_text(diff.get("auc")) if baseline else "-"]
            lines.append("| " + " | ".join(row) + " |")
        resolution = table["resolution"].get(protocol, {})
        if baseline and all(resolution.get(c) is not None for c in CONVENTION_TITLES):
            lines += ["", f"Resolution with {len(seeds)} seed{'s' if len(seeds) > 1 else ''}: a paired HTER "
                      "difference smaller than about "
                      + " / ".join(f"{_pct(resolution[c])} ({c})" for c in CONVENTION_TITLES)
                      + f" points (the median half-width of the {level}% intervals above) cannot be told "
                      "from 0."]
    if table.get("missing"):
        lines += ["", f"Not finished, not in the table ({len(table['missing'])} of {table['runs']} runs): "
                  + ", ".join(table["missing"]) + "."]
    return "\n".join(lines) + "\n"


def _variant_rows(table: dict, convention: str) -> list[str]:
    """The markdown rows of one convention: variants x protocols, and their average."""
    cells = {(c["protocol"], c["variant"]): c[convention] for c in table["cells"]}
    means = {a["variant"]: a[convention] for a in table["average"]}
    header = ["variant", *table["protocols"], *(["average"] if means else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in table["variants"]:
        row = [variant, *(_cell_text(cells.get((p, variant))) for p in table["protocols"])]
        if means:
            a = means.get(variant)
            row.append(f"{_pct(a['hter'])} / {_pct(a['auc'])}" if a else "-")
        lines.append("| " + " | ".join(row) + " |")
    return lines
