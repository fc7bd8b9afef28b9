"""Pre-trains the KDFAS ViTs on the synthetic face corpus: the starting point ImageNet gives a
ViT on real data, which a ViT trained from scratch on a few hundred FAS frames lacks (it
learns the source cameras instead).

The ViT of a config's role (teacher or student, same architecture, at `data.image_size`)
learns two face tasks on :mod:`dtda_jax.data.synthetic.face_corpus` (people and videos the
FAS benchmark never shows; with the default settings every video through its own random
capture pipeline, never a benchmark camera):

* identity: ArcFace (:func:`dtda_jax.teachers.training.arcface_loss`) over the corpus' train
  identities on the ViT's class-token features;
* attributes: binary cross-entropy of the five attributes through the ViT's head (five
  outputs here; KDFAS gives the network a fresh live/spoof head).

L = L_arcface + attribute_weight * L_attributes, AdamW with weight decay on kernels only.
The ViT (without its head) is saved exactly like a converted timm ViT
(:func:`dtda_jax.weights.store.save_converted`, kind ``timm_vit``, the converter's
architecture entries), so :func:`dtda_jax.methods.kdfas.stages.vit_init` loads it unchanged,
with a report next to it (the manifest's source, pinned by sha256): the loss history and the
quality on held-out people, through unseen random pipelines and through the benchmark's four
cameras, next to the same ViT at random init: face verification (AUC, TAR@FAR) on the class
token, attribute accuracy through the head.

Trained through the framework's stage loop (resumable from ``<cache>/<name>.training/``,
NaN guard, progress lines) and cached by architecture and settings; the command line::

    python tools/pretrain_vits.py --config=configs/kdfas_synthetic_to_kiosk.py
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dtda_jax.core import artifacts, distributed, optim, xla_cpu
from dtda_jax.core.loop import StopAt
from dtda_jax.core.logs import say
from dtda_jax.core.state import TrainState
from dtda_jax.data.synthetic import ATTRIBUTES, face_corpus
from dtda_jax.evaluation.face_quality import attribute_metrics, verification_metrics
from dtda_jax.inference.scoring import chunks, score_batches
from dtda_jax.models.vit import VisionTransformer
from dtda_jax.teachers import training
from dtda_jax.weights import store
from dtda_jax.weights.store import KIND_VIT

# Part of every cache name: bump it when pre-training changes in a way the settings do not show.
PRETRAINER_VERSION = 1
INIT_SALT = 5  # folded into the seed's key for the ViT's initialisation
RANDOM_INIT_SALT = 1005  # the random-init ViT of the quality report
Log = Callable[[str], None]


def architecture(size: ml_collections.ConfigDict, image_size: int) -> dict[str, int]:
    """The manifest architecture tools/convert_vit.py writes (same keys and order)."""
    return {"patch_size": int(size.patch_size), "width": int(size.width), "depth": int(size.depth),
            "num_heads": int(size.num_heads), "mlp_dim": int(size.mlp_dim), "image_size": int(image_size)}


def pretraining_model(a: Mapping[str, int]) -> VisionTransformer:
    """The ViT of architecture `a` with one head output per corpus attribute."""
    return VisionTransformer(patch_size=a["patch_size"], width=a["width"], depth=a["depth"],
                             num_heads=a["num_heads"], mlp_dim=a["mlp_dim"], num_classes=len(ATTRIBUTES))


def corpus_settings(s: ml_collections.ConfigDict, image_size: int) -> face_corpus.CorpusSettings:
    c = s.corpus
    return face_corpus.CorpusSettings(
        image_size=int(image_size), seed=int(c.seed), train_identities=int(c.train_identities),
        heldout_identities=int(c.heldout_identities), videos_per_identity=int(c.videos_per_identity),
        frames_per_video=int(c.frames_per_video), capture=str(c.capture))


TRAINING_FIELDS = ("steps", "batch_size", "learning_rate", "weight_decay", "warmup_steps", "grad_clip_norm",
                   "arcface_scale", "arcface_margin", "attribute_weight", "flip", "brightness_jitter")


def _cache_payload(a: Mapping[str, int], s: ml_collections.ConfigDict) -> dict[str, Any]:
    return {"pretrainer_version": PRETRAINER_VERSION, "architecture": dict(a),
            "corpus": {"corpus_version": face_corpus.CORPUS_VERSION,
                       **dataclasses.asdict(corpus_settings(s, a["image_size"]))},
            "training": {k: s[k] for k in TRAINING_FIELDS}, "seed": int(s.seed)}


def cache_name(a: Mapping[str, int], s: ml_collections.ConfigDict) -> str:
    """Readable architecture + hash of everything that determines the weights (evaluation and
    checkpointing settings are not part of it): configs that need the same ViT share it."""
    prefix = f"vit{a['depth']}x{a['width']}p{a['patch_size']}_in{a['image_size']}_faces"
    return artifacts.settings_name(prefix, _cache_payload(a, s))


# ============================================================================================
# Training
# ============================================================================================


def pretrain_step(state: TrainState, frozen, batch, *, model: VisionTransformer, tx: optax.GradientTransformation,
                  arcface_scale: float, arcface_margin: float, attribute_weight: float):
    """One step of L = ArcFace(class token) + attribute_weight * BCE(head, attributes); the
    targets are (identity class, attribute 0/1 ...) per image."""
    x, targets = training.corpus_batch(frozen, batch)

    def loss_fn(p):
        out = model.apply({"params": p["vit"]}, x)
        loss_id, acc_id = training.arcface_loss(out["features"].astype(jnp.float32), p["centres"], targets[:, 0],
                                                arcface_scale, arcface_margin)
        loss_attr, acc_attr = training.attribute_bce(out["cls_logits"].astype(jnp.float32), targets[:, 1:])
        loss = loss_id + attribute_weight * loss_attr
        return loss, {"loss_identity": loss_id, "acc_identity": acc_id, "loss_attributes": loss_attr,
                      "acc_attributes": acc_attr}

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads, tx), {"loss": loss, **metrics}


def _init_fn(model: VisionTransformer, image_size: int, num_classes: int, seed: int):
    # ArcFace class centres N(0, 0.01), as insightface's PartialFC and the own T_fr.
    centres = 0.01 * np.random.default_rng([seed, 7]).standard_normal(
        (num_classes, model.width)).astype(np.float32)

    def init(key):
        params = model.init(key, jnp.zeros((1, image_size, image_size, 3)))["params"]
        return {"params": {"vit": params, "centres": centres}}

    return init


def pretrain_vit(a: Mapping[str, int], s: ml_collections.ConfigDict, corpus: Mapping[str, face_corpus.CorpusSplit],
                 workdir: str, log: Log = say, mesh=None, stop: StopAt | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Pre-trains (or resumes, in `workdir`) and evaluates the ViT of architecture `a`: its
    params without the head, and its report; None when `stop` ended it early."""
    model = pretraining_model(a)
    train = corpus["train"]
    labels, num_classes = train.class_labels()
    targets = np.concatenate([labels[:, None], train.attributes], axis=1).astype(np.int32)
    steps = int(s.steps)
    schedule = optim.learning_rate_schedule(s.learning_rate, steps, "cosine", min(int(s.warmup_steps), steps - 1))
    tx = optim.make_optimizer("adamw", schedule, weight_decay=s.weight_decay, grad_clip_norm=s.grad_clip_norm,
                              decay="kernels")
    step = functools.partial(pretrain_step, model=model, tx=tx, arcface_scale=s.arcface_scale,
                             arcface_margin=s.arcface_margin, attribute_weight=s.attribute_weight)
    log(f"[pretrain] ViT {a['depth']} blocks x {a['width']} on {len(train)} face images of {num_classes} "
        f"identities ({train.attributes.shape[1]} attributes): {steps} steps x {s.batch_size}, AdamW lr "
        f"{s.learning_rate}, ArcFace s={s.arcface_scale} m={s.arcface_margin} + {s.attribute_weight} x attributes")
    t0 = time.perf_counter()
    outcome = training.train_on_corpus(
        "pretrain vit", "kdfas.face_pretraining", INIT_SALT, step,
        _init_fn(model, a["image_size"], num_classes, int(s.seed)), tx, train.images, targets, s,
        seed=int(s.seed), log_every=int(s.log_every), checkpoint_every=int(s.checkpoint_every), log=log,
        workdir=workdir, mesh=mesh, stop=stop)
    if outcome is None:
        return None
    state, record = outcome
    params = jax.tree.map(np.asarray, state.params["vit"])
    random_params = jax.jit(_init_fn(model, a["image_size"], num_classes, int(s.seed)))(
        training.init_key(int(s.seed), RANDOM_INIT_SALT))["params"]["vit"]
    quality = evaluate(model, params, random_params, corpus, s)
    history = record["history"]
    report = {**_cache_payload(a, s), "eval_settings": s.eval.to_dict(),
              "train_seconds": round(record["seconds"], 1), "total_seconds": round(time.perf_counter() - t0, 1),
              "first_loss": history[0]["loss"], "final_loss": history[-1]["loss"], "history": history,
              "quality": quality,
              "disjointness": (f"corpus identity ids and video ids start at {face_corpus.ID_OFFSET} / "
                               f"{face_corpus.VIDEO_OFFSET}; the FAS benchmark's start at 0")}
    return {k: v for k, v in params.items() if k != "head"}, report


# ============================================================================================
# Quality
# ============================================================================================


def _outputs(model: VisionTransformer, batch_size: int):
    """(params, uint8 images) -> (features of image + mirrored image, attribute logits)."""
    def forward(params, images_uint8):
        x = images_uint8.astype(jnp.float32) / 255.0
        out = model.apply({"params": params}, jnp.concatenate([x, x[:, :, ::-1]]))
        n = len(x)
        features = out["features"][:n] + out["features"][n:]
        return jnp.concatenate([features, out["cls_logits"][:n]], axis=1).astype(jnp.float32)

    forward = jax.jit(forward, compiler_options=xla_cpu.compiler_options(xla_cpu.SCORING))

    def run(params, images):
        out = score_batches(forward, params, chunks(images, batch_size), batch_size)
        return out[:, :model.width], out[:, model.width:]

    return run


def evaluate(model: VisionTransformer, params, random_params, corpus: Mapping[str, face_corpus.CorpusSplit],
             s: ml_collections.ConfigDict) -> dict[str, Any]:
    """Held-out people through the corpus' own capture ("heldout") and once through each
    benchmark camera ("benchmark_cameras"): verification on the class token and attribute
    accuracy, pre-trained vs random init."""
    run = _outputs(model, int(s.eval.batch_size))
    kw = dict(max_negative_pairs=int(s.eval.max_negative_pairs), folds=int(s.eval.folds), seed=int(s.seed))
    reference = corpus["train"].attributes
    quality = {}
    for split in ("heldout", "benchmark_cameras"):
        part = corpus["heldout" if split == "heldout" else "heldout_cameras"]
        entry = {"protocol": (f"{len(part)} images of {len(np.unique(part.identity))} held-out identities; "
                              "verification: cosine of L2-normalised (class token(image) + class token(mirrored "
                              "image)); attributes: head logit > 0")}
        for name, p in (("trained", params), ("random_init", random_params)):
            features, logits = run(p, part.images)
            entry[name] = {"verification": verification_metrics(features, part.identity, **kw),
                           "attributes": attribute_metrics(logits, part.attributes, ATTRIBUTES, reference)}
        quality[split] = entry
    return quality


def quality_summary(a: Mapping[str, int], quality: Mapping[str, Any]) -> str:
    """One log line: verification AUC and attribute accuracy, pre-trained (random init)."""
    def part(split):
        q = quality[split]
        t, r = q["trained"], q["random_init"]
        return (f"verification AUC {t['verification']['auc']:.3f} ({r['verification']['auc']:.3f}), attribute "
                f"accuracy {t['attributes']['mean_accuracy']:.3f} ({r['attributes']['mean_accuracy']:.3f})")
    return (f"[pretrain] ViT {a['depth']}x{a['width']} on held-out people, pre-trained (random init): "
            f"{part('heldout')}; through the benchmark's cameras {part('benchmark_cameras')}")


# ============================================================================================
# The cache
# ============================================================================================


def _existing(path: str) -> bool:
    try:
        store.check_converted(path, KIND_VIT)
        return True
    except (FileNotFoundError, ValueError):
        return False


def save(path: str, a: Mapping[str, int], params: Mapping[str, Any], report: dict[str, Any]) -> None:
    """The pre-trained ViT as a converted checkpoint whose source is its report."""
    if not artifacts.writes_files():
        return  # a job's other processes: the primary saves it
    report_path = path + ".report.json"
    artifacts.write_json(report_path, report)
    store.save_converted(path, {"params": params}, kind=KIND_VIT, architecture=a, source=report_path, extra={
        "trained_by": {"tool": "dtda_jax.methods.kdfas.pretraining", "pretrainer_version": PRETRAINER_VERSION,
                       "cache_name": os.path.basename(path),
                       "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
        "quality": report["quality"],
        "input_normalisation": "[-1, 1] ((x - 0.5) / 0.5 on [0, 1] RGB)"})


def cache_dir(config) -> str:
    return os.path.abspath(config.kdfas.pretrained_dir or os.path.join(config.data.data_dir, "kdfas_pretrained"))


def ensure_pretrained_vit(config, role: str, log: Log = say, mesh=None, stop: StopAt | None = None) -> str | None:
    """The checkpoint directory of the config's `role` ViT ("teacher" / "student") pre-trained
    with `kdfas.face_pretraining`, pre-training it when the cache (`kdfas.pretrained_dir`)
    lacks it; None when `stop` ended the pre-training early (rerunning resumes it). Layout as
    the own teachers' cache (dtda_jax.teachers.training): ``corpus/``, the checkpoint,
    ``<name>.report.json`` and, while it trains, ``<name>.training/``; a second process that
    needs the same ViT at the same time waits, then reuses it."""
    s, image_size = config.kdfas.face_pretraining, int(config.data.image_size)
    a = architecture(config.kdfas[role], image_size)
    root = cache_dir(config)
    path = os.path.join(root, cache_name(a, s))
    if _existing(path):
        log(f"[pretrain] reusing the pre-trained ViT {path}")
        return path
    corpus_cfg = corpus_settings(s, image_size)
    training.check_benchmark_disjoint(config, corpus_cfg)
    with distributed.primary_first("face corpus"):  # rendered once, by the primary
        corpus, corpus_path = face_corpus.load_face_corpus(os.path.join(root, "corpus"), corpus_cfg, log)
    training_dir = path + ".training"
    with distributed.primary_lock(training_dir, "ViT pre-training", wait=True, log=log):
        if _existing(path):
            log(f"[pretrain] reusing the pre-trained ViT {path}")
            return path
        outcome = pretrain_vit(a, s, corpus, training_dir, log, mesh, stop)
        if outcome is None:
            return None
        params, report = outcome
        report["corpus"]["file"] = os.path.basename(corpus_path)
        save(path, a, params, report)
        artifacts.remove(training_dir)
    log(f"[pretrain] saved {path}")
    log(quality_summary(a, report["quality"]))
    return path


# ============================================================================================
# The command line
# ============================================================================================


def main(argv=None) -> int:
    import argparse

    from dtda_jax.core.cli import run_command

    parser = argparse.ArgumentParser(description="Pre-train the ViTs of a KDFAS config on the synthetic face "
                                     "corpus (cached; what pretrain_on_faces runs use); print their quality.")
    parser.add_argument("--config", required=True, help="KDFAS config file, optionally with its argument "
                        "(configs/kdfas_synthetic_to_kiosk.py or ...py:kd_student)")
    parser.add_argument("--roles", default="teacher,student", help="which ViTs (default teacher,student)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set kdfas.face_pretraining.steps=500 (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_command("pretrain_vits", lambda: pretrain_and_report(args), debug=args.debug, stop_on_signals=True)


def pretrain_and_report(args) -> None:
    """The command: pre-train what the cache lacks, print each ViT's quality and checkpoint."""
    from dtda_jax import config as config_lib
    from dtda_jax.core.errors import UserError
    from dtda_jax.methods.kdfas import config as kdfas_config

    path, _, arg = args.config.partition(":")
    config = config_lib.load_config_file(path, *([arg] if arg else []))
    if config.method.name != "kdfas":
        raise UserError(f"{path} is a {config.method.name} config; ViT pre-training is for KDFAS configs.")
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    if not roles or any(r not in ("teacher", "student") for r in roles):
        raise UserError(f"--roles {args.roles!r}: choose from teacher,student.")
    if "face_pretraining" not in config.kdfas:
        kdfas_config.use_face_pretraining(config)
    for assignment in args.set:
        try:
            key, value = config_lib.parse_assignment(assignment, example="kdfas.face_pretraining.steps=500")
            config_lib.set_field(config, key, value)
        except (KeyError, ValueError) as err:
            raise UserError(f"--set {assignment!r}: {err}" if isinstance(err, KeyError) else str(err)) from None
    config_lib.validate_config(config)
    t0 = time.perf_counter()
    paths = {role: ensure_pretrained_vit(config, role) for role in roles}
    print(f"\nPre-trained ViTs ({time.perf_counter() - t0:.0f} s):")
    for role, p in paths.items():
        manifest = store.read_manifest(p)
        print(quality_summary(manifest["architecture"], manifest["quality"]).replace("[pretrain] ", f"  {role}: "))
        print(f"    config.kdfas.{role}.init_checkpoint = {p!r}")
