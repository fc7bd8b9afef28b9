"""The paper's figures from a finished sweep: ROC curves (Fig. 3), t-SNE (Fig. 4), Grad-CAM (Fig. 5).

    python -m dtda_jax.figures --sweep=runs/ablation [--seed=0] [--before=baseline --after=dtda]

For every protocol of the sweep (`python -m dtda_jax.experiments`), into `<sweep>/figures/`:
- `roc_<protocol>.png`: the target ROC of each variant at its reported checkpoint (the
  per-video scores each evaluation saved in `scores/`), AUC in the legend.
- `tsne_<protocol>.png`: t-SNE (scikit-learn) of the student's pooled features of source and
  target frames, coloured by domain, live o / spoof x; `--before` and `--after` side by side.
- `grad_cam_<protocol>.png`: Grad-CAM of the predicted class on the last feature map (computed
  with jax.grad through the Flax student) for the same target faces under both runs.
Needs matplotlib (`pip install -e ".[figures]"`).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any, Sequence

import numpy as np

from dtda_jax.core import artifacts
from dtda_jax.core.errors import UserError
from dtda_jax.evaluation import metrics as fas_metrics
from dtda_jax.inference.scoring import images_to_unit_range

CHECKPOINT_OF_SELECTION = {"best_on_target": "best", "last": "latest"}


class MissingRunError(UserError, FileNotFoundError):
    """A run of the sweep, or a file of it, that the figures need is not there."""


class UnsupportedRunError(UserError, ValueError):
    """The run's method has no student the figure can read."""


# ---------------------------------------------------------------------------------------------
# Numerics (pure)


def grad_cam(student, variables: Any, images: np.ndarray, target_class: np.ndarray | None = None):
    """Grad-CAM maps in [0, 1] of shape (N, H, W) for uint8 NHWC images, and the classes used.

    Weights are the spatial mean of d logit_c / d A over the last feature map A; the map is
    ReLU(sum_k w_k A_k), bilinearly resized to the image and divided by its maximum. `c` is the
    predicted class unless `target_class` is given. One jitted program per student and shape.
    """
    classes = None if target_class is None else np.asarray(target_class)
    cam, used = _grad_cam_program(student)(variables, np.asarray(images), classes)
    return np.asarray(cam), np.asarray(used)


@functools.lru_cache(maxsize=8)
def _grad_cam_program(student):
    import jax
    import jax.numpy as jnp

    from dtda_jax.models.student import DTDAStudent

    @jax.jit
    def program(variables, images, target_class):
        x = images_to_unit_range(images)
        out = student.apply(variables, x, train=False, return_feature_map=True)
        fmap = out["feature_map"].astype(jnp.float32)
        classes = jnp.argmax(out["cls_logits"], axis=-1) if target_class is None else target_class

        def class_logit_sum(feature_map):
            logits = student.apply(variables, feature_map, method=DTDAStudent.from_feature_map)["cls_logits"]
            return jnp.sum(jnp.take_along_axis(logits, classes[:, None], axis=-1))

        weights = jnp.mean(jax.grad(class_logit_sum)(fmap), axis=(1, 2))  # (N, C)
        cam = jax.nn.relu(jnp.einsum("nhwc,nc->nhw", fmap, weights))
        cam = jax.image.resize(cam, (cam.shape[0], *images.shape[1:3]), method="bilinear")
        return cam / jnp.maximum(jnp.max(cam, axis=(1, 2), keepdims=True), 1e-12), classes

    return program


def pooled_features(student, variables: Any, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """The student's pooled encoder features (the input of all heads) for uint8 NHWC images."""
    import jax

    from dtda_jax.inference.scoring import chunks, score_batches

    @jax.jit
    def features(variables, batch):
        return student.apply(variables, images_to_unit_range(batch), train=False)["features"]

    return score_batches(features, variables, chunks(images, batch_size), batch_size,
                         padding="power_of_two")


def tsne_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.astype(np.float64))


def balanced_sample(domains: np.ndarray, labels: np.ndarray, per_group: int, seed: int) -> np.ndarray:
    """Sorted positions with up to `per_group` frames of each (domain, label) pair."""
    rng = np.random.default_rng(seed)
    chosen = []
    for d in np.unique(domains):
        for y in (0, 1):
            group = np.flatnonzero((domains == d) & (labels == y))
            chosen.extend(rng.choice(group, size=min(per_group, len(group)), replace=False))
    return np.sort(np.asarray(chosen, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# A sweep's runs


def run_dir(sweep: str, protocol: str, variant: str, seed: int) -> str:
    return os.path.join(sweep, protocol, variant, f"seed{seed}")


def read_results(workdir: str) -> dict:
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        raise MissingRunError(f"{workdir} has not finished (no results.json); run or resume the sweep "
                              "first (python -m dtda_jax.experiments with the same arguments).")
    return artifacts.read_json(path)


def reported_roc(workdir: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(FPR, TPR, AUC) of the target videos at the run's reported evaluation."""
    from dtda_jax.evaluation import intervals

    results = read_results(workdir)
    try:
        run = intervals.saved_run_scores(workdir, results, results["selection"])
    except FileNotFoundError as err:
        raise MissingRunError(f"{err.filename} is missing: this run predates saved evaluation scores; "
                              "rerun it in a fresh workdir to plot its ROC.") from None
    labels, scores = run.target_labels, run.target_scores
    fpr, tpr, _ = fas_metrics.roc_curve(labels, scores)
    return fpr, tpr, fas_metrics.roc_auc(labels, scores)


def load_reported_student(workdir: str):
    """(student module, variables, config) of the run's reported checkpoint; the run's method
    says which student that is (t-SNE and Grad-CAM need DTDA's ResNet-18)."""
    from dtda_jax import methods
    from dtda_jax.inference import predict

    results = read_results(workdir)
    run = predict.load_run(workdir, CHECKPOINT_OF_SELECTION[results["selection"]])
    try:
        student = methods.training_module(run.config.method.name).feature_model(run.config)
    except UserError as err:
        raise UnsupportedRunError(f"{workdir}: {err}") from None
    return student, run.variables, run.config


def feature_figures_unsupported(workdir: str) -> str | None:
    """Why the t-SNE and Grad-CAM cannot be drawn for the method of the run in `workdir` (a
    KDFAS sweep has no ResNet-18 student), or None."""
    from dtda_jax import methods
    from dtda_jax.config import records

    config = records.read_recorded_config(workdir)
    try:
        methods.training_module(config.method.name).feature_model(config)
    except UserError as err:
        return str(err)
    return None


def check_sweep_folder(sweep: str) -> None:
    """A --sweep argument must be the --out folder of a sweep (one line when it is not)."""
    if not os.path.isdir(sweep):
        raise MissingRunError(f"--sweep {sweep} does not exist; pass the --out folder of "
                              "python -m dtda_jax.experiments.")


def sweep_layout(sweep: str) -> dict[str, list[str]]:
    """{protocol: [variants]} found in the sweep folder, in table.json's order when present."""
    table_path = os.path.join(sweep, "table.json")
    if os.path.exists(table_path):
        table = artifacts.read_json(table_path)
        return {p: list(table["variants"]) for p in table["protocols"]}
    layout = {}
    for protocol in sorted(os.listdir(sweep)):
        folder = os.path.join(sweep, protocol)
        if os.path.isdir(folder) and protocol != "figures":
            layout[protocol] = sorted(v for v in os.listdir(folder) if os.path.isdir(os.path.join(folder, v)))
    return layout


# ---------------------------------------------------------------------------------------------
# Plots (side effects: PNG files)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str, path: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4), dpi=150)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUC {100 * auc:.2f}%)")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate (spoof accepted)", ylabel="true positive rate (live accepted)",
           xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    artifacts.write_atomically(path, lambda f: fig.savefig(f, format="png"), binary=True)
    plt.close(fig)


def plot_tsne(panels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], domain_names: Sequence[str],
              title: str, path: str) -> None:
    """panels: {run name: (2-D embedding, domain index, label)}; colour = domain, o live, x spoof."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), dpi=150, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, (embedding, domains, labels)) in zip(axes[0], panels.items()):
        for d, domain in enumerate(domain_names):
            target = " (target)" if d == len(domain_names) - 1 else ""
            for y, marker, kind in ((1, "o", "live"), (0, "x", "spoof")):
                sel = (domains == d) & (labels == y)
                ax.scatter(embedding[sel, 0], embedding[sel, 1], s=12, marker=marker, color=colours(d),
                           linewidths=1.0, label=f"{domain}{target} {kind}")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    artifacts.write_atomically(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"), binary=True)
    plt.close(fig)


def plot_grad_cam(images: np.ndarray, labels: np.ndarray, maps: dict[str, tuple[np.ndarray, np.ndarray]],
                  title: str, path: str) -> None:
    """Rows = faces; columns = the image, then each run's map over it (with its predicted class)."""
    plt = _pyplot()
    names = ("spoof", "live")
    fig, axes = plt.subplots(len(images), 1 + len(maps), figsize=(1.9 * (1 + len(maps)), 1.9 * len(images)),
                             dpi=150, squeeze=False)
    for i, image in enumerate(images):
        axes[i][0].imshow(image)
        axes[i][0].set_title(f"true: {names[labels[i]]}", fontsize=7)
        for j, (run, (cams, predicted)) in enumerate(maps.items(), start=1):
            axes[i][j].imshow(image)
            axes[i][j].imshow(cams[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            axes[i][j].set_title(f"{run}: {names[predicted[i]]}", fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    artifacts.write_atomically(path, lambda f: fig.savefig(f, format="png"), binary=True)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Command line


def make_figures(sweep: str, seed: int, before: str, after: str, per_group: int, num_faces: int,
                 out: str) -> list[str]:
    """Writes the three figures of every protocol; returns the paths written."""
    from dtda_jax.data import pipeline

    os.makedirs(out, exist_ok=True)
    written = []
    for protocol, variants in sweep_layout(sweep).items():
        curves = {v: reported_roc(run_dir(sweep, protocol, v, seed)) for v in variants}
        path = os.path.join(out, f"roc_{protocol}.png")
        plot_roc(curves, f"{protocol}, seed {seed}: target ROC", path)
        written.append(path)
        print(f"[figures] {path}", flush=True)

        unsupported = feature_figures_unsupported(run_dir(sweep, protocol, variants[0], seed))
        if unsupported:
            print(f"[figures] {protocol}: ROC only; {unsupported}", flush=True)
            continue
        runs = {name: load_reported_student(run_dir(sweep, protocol, name, seed)) for name in (before, after)}
        data = pipeline.load_protocol(runs[after][2])
        frames = {"source": data.train, "target": data.target}
        chosen = {k: balanced_sample(np.asarray(f.domain), np.asarray(f.label), per_group, seed)
                  for k, f in frames.items()}
        images = np.concatenate([frames[k].read_images(chosen[k]) for k in frames])
        domains = np.concatenate([np.asarray(frames[k].domain)[chosen[k]] for k in frames])
        labels = np.concatenate([np.asarray(frames[k].label)[chosen[k]] for k in frames])
        panels = {name: (tsne_embedding(pooled_features(student, variables, images), seed), domains, labels)
                  for name, (student, variables, _) in runs.items()}
        path = os.path.join(out, f"tsne_{protocol}.png")
        plot_tsne(panels, data.domain_names, f"{protocol}: student features, source and target frames", path)
        written.append(path)
        print(f"[figures] {path}", flush=True)

        target = np.asarray(data.target.label)
        faces = balanced_sample(np.zeros_like(target), target, num_faces // 2, seed)
        face_images = data.target.read_images(faces)
        maps = {name: grad_cam(student, variables, face_images) for name, (student, variables, _) in runs.items()}
        path = os.path.join(out, f"grad_cam_{protocol}.png")
        plot_grad_cam(face_images, target[faces], maps, f"{protocol}: Grad-CAM of the predicted class", path)
        written.append(path)
        print(f"[figures] {path}", flush=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dtda_jax.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", required=True, help="the --out folder of python -m dtda_jax.experiments")
    p.add_argument("--seed", type=int, default=0, help="which seed's runs to plot")
    p.add_argument("--before", default="baseline", help="variant for the left t-SNE / Grad-CAM panel")
    p.add_argument("--after", default="dtda", help="variant for the right panel")
    p.add_argument("--per_group", type=int, default=40, help="t-SNE frames per (domain, live/spoof)")
    p.add_argument("--num_faces", type=int, default=6, help="Grad-CAM faces (half live, half spoof)")
    p.add_argument("--out", default=None, help="default: <sweep>/figures")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    from dtda_jax.core.cli import run_command

    def body():
        check_sweep_folder(args.sweep)
        make_figures(args.sweep, args.seed, args.before, args.after, args.per_group, args.num_faces,
                     args.out or os.path.join(args.sweep, "figures"))

    return run_command("figures", body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
