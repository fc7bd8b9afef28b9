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


def mean_std(values: Sequence[float]) -> dict[str, float | int]:
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "n": int(len(values))}


def _cell_text(cell: dict | None) -> str:
    if cell is None:
        return "-"
    h, a = cell["hter"], cell["auc"]
    spread = f" +- {100 * h['std']:.2f}" if h["n"] > 1 else ""
    auc_spread = f" +- {100 * a['std']:.2f}" if a["n"] > 1 else ""
    return f"{100 * h['mean']:.2f}{spread} / {100 * a['mean']:.2f}{auc_spread} (n={h['n']})"


def markdown_table(table: dict) -> str:
    """Variants as rows, protocols as columns, cells "HTER / AUC (%)": the runs' reported
    convention (policy lines on top), then, where the runs recorded it, the deployable one."""
    lines = []
    for p in table["policies"]:
        lines.append(f"HTER threshold: `{p['threshold_policy']}`; model selection: `{p['selection']}`; "
                     f"video score: `{p['video_reduce']}` of frame live probabilities.")
    lines.append("Cells: HTER % / AUC %, mean +- std over seeds (n = seeds).")
    lines += ["", *_variant_rows(table, lambda c: c)]
    if any(c.get("deployable") for c in table["cells"]):
        lines += ["", "Deployable: the last checkpoint, HTER (= ACER) at the threshold chosen on the "
                  "source domains' held-out videos (their EER), no target label used.", "",
                  *_variant_rows(table, lambda c: c.get("deployable"), averages=False)]
    if table.get("missing"):
        lines += ["", f"Not finished, not in the table ({len(table['missing'])} of {table['runs']} runs): "
                  + ", ".join(table["missing"]) + "."]
    return "\n".join(lines) + "\n"


def _variant_rows(table: dict, figures, averages: bool = True) -> list[str]:
    """The markdown rows of one convention; `figures(cell)` picks its HTER / AUC entries."""
    cells = {(c["protocol"], c["variant"]): figures(c) for c in table["cells"]}
    means = {a["variant"]: a for a in table["average"]} if averages else {}
    header = ["variant", *table["protocols"], *(["average"] if means else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in table["variants"]:
        row = [variant, *(_cell_text(cells.get((p, variant))) for p in table["protocols"])]
        if means:
            a = means.get(variant)
            row.append(f"{100 * a['hter']:.2f} / {100 * a['auc']:.2f}" if a else "-")
        lines.append("| " + " | ".join(row) + " |")
    return lines
