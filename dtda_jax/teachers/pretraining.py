"""Pre-trains students' backbones on the synthetic face corpus: the starting point ImageNet
gives a network on real data, which a network trained from scratch on a few hundred FAS frames
lacks (it learns the source cameras instead).

Two backbones (:class:`Backbone`): KDFAS's ViTs and DTDA's ResNet-18 encoder, each at the
run's `data.image_size`. Each learns two face tasks on :mod:`dtda_jax.data.synthetic.face_corpus`
(people and videos the FAS benchmark never shows; with the default settings,
:func:`dtda_jax.teachers.settings.face_pretraining_config`, every video through its own
random capture pipeline, never a benchmark camera):

* identity: ArcFace (:func:`dtda_jax.teachers.training.arcface_loss`) over the corpus' train
  identities on the backbone's features (the ViT's class token, the ResNet's pooled features);
* attributes: binary cross-entropy of the five attributes through a linear head (dropped
  afterwards: the FAS model gets its own heads).

L = L_arcface + attribute_weight * L_attributes, AdamW with weight decay on kernels only,
BatchNorm in train mode. The backbone is saved exactly as its converter writes it
(:func:`dtda_jax.weights.store.save_converted`: kind ``timm_vit`` like tools/convert_vit.py,
``torchvision_resnet18`` like tools/convert_resnet18.py, same architecture entries), so the
code that loads ImageNet weights loads it unchanged, with a report next to it (the
manifest's source, pinned by sha256): the loss history and the quality on held-out people,
through unseen random pipelines and through the benchmark's four cameras, next to the same
network at random init: face verification (AUC, TAR@FAR) on the features, attribute
accuracy through the head.

Trained through the framework's stage loop (resumable from ``<cache>/<name>.training/``,
NaN guard, progress lines) and cached by backbone and settings; the command line::

    python tools/pretrain_on_faces.py --config=configs/kdfas_synthetic_to_kiosk.py
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import os
import time
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dtda_jax import config as config_lib
from dtda_jax.core import artifacts, distributed, optim, xla_cpu
from dtda_jax.core.logs import say
from dtda_jax.core.loop import StopAt
from dtda_jax.core.state import TrainState
from dtda_jax.data.synthetic import ATTRIBUTES, face_corpus
from dtda_jax.evaluation.face_quality import attribute_metrics, verification_metrics
from dtda_jax.inference.scoring import chunks, score_batches
from dtda_jax.models.resnet import ResNet18Encoder, imagenet_normalize
from dtda_jax.models.vit import VisionTransformer
from dtda_jax.teachers import training
from dtda_jax.weights import store

# Part of every cache name: bump it when pre-training changes in a way the settings do not show.
PRETRAINER_VERSION = 1
INIT_SALT = 5  # folded into the seed's key for the network's initialisation
RANDOM_INIT_SALT = 1005  # the random-init network of the quality report
Log = Callable[[str], None]


# ============================================================================================
# Backbones
# ============================================================================================


class FaceResNet18(nn.Module):
    """ResNet-18 encoder (ImageNet-normalised input, as DTDA's student and torchvision's
    ResNet-18) with a linear attribute head `fc`: {"features": pooled, "cls_logits": fc}."""

    width: int = 64
    num_classes: int = len(ATTRIBUTES)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        features = ResNet18Encoder(self.width, name="encoder")(imagenet_normalize(x), train)
        return {"features": features, "cls_logits": nn.Dense(self.num_classes, name="fc")(features)}


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A network to pre-train: its model (with a head of one output per attribute, returning
    "features" and "cls_logits"), its feature width, and how its converter saves it."""

    kind: str  # the converted-checkpoint kind (store.KIND_*)
    architecture: dict[str, int]  # the manifest entries its converter writes
    name: str  # readable prefix of the cache name
    model: nn.Module
    feature_dim: int
    image_size: int

    def saved(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """What the converter of `kind` writes: the ViT's params without its head; the
        ResNet's `encoder` params and BatchNorm statistics."""
        if self.kind == store.KIND_VIT:
            return {"params": {k: v for k, v in variables["params"].items() if k != "head"}}
        return {"params": {"encoder": variables["params"]["encoder"]},
                "batch_stats": {"encoder": variables["batch_stats"]["encoder"]}}


def vit_backbone(size: ml_collections.ConfigDict, image_size: int) -> Backbone:
    """A KDFAS ViT (`kdfas.teacher` / `kdfas.student`), as tools/convert_vit.py describes it."""
    a = {"patch_size": int(size.patch_size), "width": int(size.width), "depth": int(size.depth),
         "num_heads": int(size.num_heads), "mlp_dim": int(size.mlp_dim), "image_size": int(image_size)}
    model = VisionTransformer(patch_size=a["patch_size"], width=a["width"], depth=a["depth"],
                              num_heads=a["num_heads"], mlp_dim=a["mlp_dim"], num_classes=len(ATTRIBUTES))
    return Backbone(store.KIND_VIT, a, f"vit{a['depth']}x{a['width']}p{a['patch_size']}_in{image_size}_faces",
                    model, a["width"], int(image_size))


def resnet18_backbone(width: int, image_size: int) -> Backbone:
    """DTDA's ResNet-18 encoder at `width`, as tools/convert_resnet18.py describes it."""
    return Backbone(store.KIND_RESNET18, {"width": int(width)}, f"resnet18_w{width}_in{image_size}_faces",
                    FaceResNet18(int(width)), 8 * int(width), int(image_size))


def corpus_settings(s: ml_collections.ConfigDict, image_size: int) -> face_corpus.CorpusSettings:
    c = s.corpus
    return face_corpus.CorpusSettings(
        image_size=int(image_size), seed=int(c.seed), train_identities=int(c.train_identities),
        heldout_identities=int(c.heldout_identities), videos_per_identity=int(c.videos_per_identity),
        frames_per_video=int(c.frames_per_video), capture=str(c.capture))


TRAINING_FIELDS = ("steps", "batch_size", "learning_rate", "weight_decay", "warmup_steps", "grad_clip_norm",
                   "arcface_scale", "arcface_margin", "attribute_weight", "flip", "brightness_jitter")


def _cache_payload(b: Backbone, s: ml_collections.ConfigDict) -> dict[str, Any]:
    payload = {"pretrainer_version": PRETRAINER_VERSION, "architecture": dict(b.architecture),
               "corpus": {"corpus_version": face_corpus.CORPUS_VERSION,
                          **dataclasses.asdict(corpus_settings(s, b.image_size))},
               "training": {k: s[k] for k in TRAINING_FIELDS}, "seed": int(s.seed)}
    if b.kind != store.KIND_VIT:  # the ViTs' names predate the ResNet
        payload["kind"] = b.kind
        payload["architecture"]["image_size"] = b.image_size
    return payload


def cache_name(b: Backbone, s: ml_collections.ConfigDict) -> str:
    """Readable backbone + hash of everything that determines the weights (evaluation and
    checkpointing settings are not part of it): configs that need the same one share it."""
    return artifacts.settings_name(b.name, _cache_payload(b, s))


# ============================================================================================
# Training
# ============================================================================================


def pretrain_step(state: TrainState, frozen, batch, *, model: nn.Module, tx: optax.GradientTransformation,
                  arcface_scale: float, arcface_margin: float, attribute_weight: float):
    """One step of L = ArcFace(features) + attribute_weight * BCE(head, attributes); the targets
    are (identity class, attribute 0/1 ...) per image."""
    x, targets = training.corpus_batch(frozen, batch)

    def loss_fn(p):
        out, updates = model.apply({"params": p["net"], "batch_stats": state.batch_stats}, x, train=True,
                                   mutable=["batch_stats"])
        loss_id, acc_id = training.arcface_loss(out["features"].astype(jnp.float32), p["centres"], targets[:, 0],
                                                arcface_scale, arcface_margin)
        loss_attr, acc_attr = training.attribute_bce(out["cls_logits"].astype(jnp.float32), targets[:, 1:])
        loss = loss_id + attribute_weight * loss_attr
        return loss, (updates.get("batch_stats", state.batch_stats),
                      {"loss_identity": loss_id, "acc_identity": acc_id, "loss_attributes": loss_attr,
                       "acc_attributes": acc_attr})

    (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads, tx, batch_stats=batch_stats), {"loss": loss, **metrics}


def _init_fn(b: Backbone, num_classes: int, seed: int):
    # ArcFace class centres N(0, 0.01), as insightface's PartialFC and the own T_fr.
    centres = 0.01 * np.random.default_rng([seed, 7]).standard_normal(
        (num_classes, b.feature_dim)).astype(np.float32)

    def init(key):
        variables = b.model.init(key, jnp.zeros((1, b.image_size, b.image_size, 3)), train=False)
        return {"params": {"net": variables["params"], "centres": centres},
                "batch_stats": variables.get("batch_stats", {})}

    return init


def _net_variables(state_params, batch_stats) -> dict[str, Any]:
    variables = {"params": jax.tree.map(np.asarray, state_params["net"])}
    if batch_stats:
        variables["batch_stats"] = jax.tree.map(np.asarray, batch_stats)
    return variables


def pretrain(b: Backbone, s: ml_collections.ConfigDict, corpus: Mapping[str, face_corpus.CorpusSplit],
             workdir: str, log: Log = say, mesh=None, stop: StopAt | None = None,
             settings_field: str = "face_pretraining") -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Pre-trains (or resumes, in `workdir`) and evaluates backbone `b`: the variables its
    converter would write, and its report; None when `stop` ended it early. `settings_field`
    names the settings in error messages."""
    train = corpus["train"]
    labels, num_classes = train.class_labels()
    targets = np.concatenate([labels[:, None], train.attributes], axis=1).astype(np.int32)
    steps = int(s.steps)
    schedule = optim.learning_rate_schedule(s.learning_rate, steps, "cosine", min(int(s.warmup_steps), steps - 1))
    tx = optim.make_optimizer("adamw", schedule, weight_decay=s.weight_decay, grad_clip_norm=s.grad_clip_norm,
                              decay="kernels")
    step = functools.partial(pretrain_step, model=b.model, tx=tx, arcface_scale=s.arcface_scale,
                             arcface_margin=s.arcface_margin, attribute_weight=s.attribute_weight)
    log(f"[pretrain] {b.name} on {len(train)} face images of {num_classes} identities "
        f"({train.attributes.shape[1]} attributes): {steps} steps x {s.batch_size}, AdamW lr "
        f"{s.learning_rate}, ArcFace s={s.arcface_scale} m={s.arcface_margin} + {s.attribute_weight} x attributes")
    t0 = time.perf_counter()
    init = _init_fn(b, num_classes, int(s.seed))
    outcome = training.train_on_corpus(
        "pretrain", settings_field, INIT_SALT, step, init, tx, train.images, targets, s,
        seed=int(s.seed), log_every=int(s.log_every), checkpoint_every=int(s.checkpoint_every), log=log,
        workdir=workdir, mesh=mesh, stop=stop)
    if outcome is None:
        return None
    state, record = outcome
    variables = _net_variables(state.params, state.batch_stats)
    random_init = jax.jit(init)(training.init_key(int(s.seed), RANDOM_INIT_SALT))
    quality = evaluate(b, variables, _net_variables(random_init["params"], random_init["batch_stats"]), corpus, s)
    history = record["history"]
    report = {**_cache_payload(b, s), "kind": b.kind, "eval_settings": s.eval.to_dict(),
              "train_seconds": round(record["seconds"], 1), "total_seconds": round(time.perf_counter() - t0, 1),
              "first_loss": history[0]["loss"], "final_loss": history[-1]["loss"], "history": history,
              "quality": quality,
              "disjointness": (f"corpus identity ids and video ids start at {face_corpus.ID_OFFSET} / "
                               f"{face_corpus.VIDEO_OFFSET}; the FAS benchmark's start at 0")}
    return b.saved(variables), report


# ============================================================================================
# Quality
# ============================================================================================


def _outputs(b: Backbone, batch_size: int):
    """(variables, uint8 images) -> (features of image + mirrored image, attribute logits)."""
    def forward(variables, images_uint8):
        x = images_uint8.astype(jnp.float32) / 255.0
        out = b.model.apply(variables, jnp.concatenate([x, x[:, :, ::-1]]), train=False)
        n = len(x)
        features = out["features"][:n] + out["features"][n:]
        return jnp.concatenate([features, out["cls_logits"][:n]], axis=1).astype(jnp.float32)

    forward = jax.jit(forward, compiler_options=xla_cpu.compiler_options(xla_cpu.SCORING))

    def run(variables, images):
        out = score_batches(forward, variables, chunks(images, batch_size), batch_size)
        return out[:, :b.feature_dim], out[:, b.feature_dim:]

    return run


def evaluate(b: Backbone, variables, random_variables, corpus: Mapping[str, face_corpus.CorpusSplit],
             s: ml_collections.ConfigDict) -> dict[str, Any]:
    """Held-out people through the corpus' own capture ("heldout") and once through each
    benchmark camera ("benchmark_cameras"): verification on the features and attribute
    accuracy, pre-trained vs random init."""
    run = _outputs(b, int(s.eval.batch_size))
    kw = dict(max_negative_pairs=int(s.eval.max_negative_pairs), folds=int(s.eval.folds), seed=int(s.seed))
    reference = corpus["train"].attributes
    quality = {}
    for split, part in (("heldout", corpus["heldout"]), ("benchmark_cameras", corpus["heldout_cameras"])):
        entry = {"protocol": (f"{len(part)} images of {len(np.unique(part.identity))} held-out identities; "
                              "verification: cosine of L2-normalised (features(image) + features(mirrored "
                              "image)); attributes: head logit > 0")}
        for name, v in (("trained", variables), ("random_init", random_variables)):
            features, logits = run(v, part.images)
            entry[name] = {"verification": verification_metrics(features, part.identity, **kw),
                           "attributes": attribute_metrics(logits, part.attributes, ATTRIBUTES, reference)}
        quality[split] = entry
    return quality


def quality_summary(name: str, quality: Mapping[str, Any]) -> str:
    """One log line: verification AUC and attribute accuracy, pre-trained (random init)."""
    def part(split):
        t, r = quality[split]["trained"], quality[split]["random_init"]
        return (f"verification AUC {t['verification']['auc']:.3f} ({r['verification']['auc']:.3f}), attribute "
                f"accuracy {t['attributes']['mean_accuracy']:.3f} ({r['attributes']['mean_accuracy']:.3f})")
    return (f"[pretrain] {name} on held-out people, pre-trained (random init): {part('heldout')}; through the "
            f"benchmark's cameras {part('benchmark_cameras')}")


# ============================================================================================
# The cache
# ============================================================================================


def save(path: str, b: Backbone, variables: Mapping[str, Any], report: dict[str, Any]) -> None:
    """The pre-trained backbone as a converted checkpoint whose source is its report."""
    if not artifacts.writes_files():
        return  # a job's other processes: the primary saves it
    report_path = path + ".report.json"
    artifacts.write_json(report_path, report)
    normalisation = ("[-1, 1] ((x - 0.5) / 0.5 on [0, 1] RGB)" if b.kind == store.KIND_VIT
                     else "ImageNet mean/std on [0, 1] RGB")
    store.save_converted(path, variables, kind=b.kind, architecture=b.architecture, source=report_path, extra={
        "trained_by": {"tool": "dtda_jax.teachers.pretraining", "pretrainer_version": PRETRAINER_VERSION,
                       "cache_name": os.path.basename(path),
                       "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
        "quality": report["quality"], "input_normalisation": normalisation})


@dataclasses.dataclass(frozen=True)
class Target:
    """A network a config's runs start from pre-trained on faces: the backbone, its settings and
    cache, and the config field its checkpoint path fills (e.g. "model.init_checkpoint")."""

    field: str
    backbone: Backbone
    settings: ml_collections.ConfigDict
    settings_field: str  # where the settings live, for messages (e.g. "model.face_pretraining")
    cache_dir: str


def cache_dir(config, configured: str) -> str:
    """The configured pre-training cache, or <data.data_dir>/face_pretrained."""
    return os.path.abspath(configured or os.path.join(config.data.data_dir, "face_pretrained"))


def with_pretrained(config, targets, log: Log = say, mesh=None, stop: StopAt | None = None):
    """A copy of `config` whose target fields point at the pre-trained networks (pre-trained
    first where the cache lacks them); None when `stop` ended a pre-training early."""
    config = copy.deepcopy(config)
    for t in targets:
        path = ensure_pretrained(config, t, log, mesh, stop)
        if path is None:
            return None
        config_lib.set_field(config, t.field, path)
    return config


def ensure_pretrained(config, t: Target, log: Log = say, mesh=None, stop: StopAt | None = None) -> str | None:
    """The checkpoint directory of target `t`'s backbone pre-trained with its settings,
    pre-training it when its cache lacks it; None when `stop` ended the pre-training early
    (rerunning resumes it). Layout as the own teachers' cache (dtda_jax.teachers.training):
    ``corpus/``, the checkpoint, ``<name>.report.json`` and, while it trains,
    ``<name>.training/``; a second process that needs the same one at the same time waits,
    then reuses it. `config` is the run's (the corpus is checked to share no person or video
    with its benchmark)."""
    b, settings, root = t.backbone, t.settings, os.path.abspath(t.cache_dir)
    path = os.path.join(root, cache_name(b, settings))
    if training.has_converted(path, b.kind):
        log(f"[pretrain] reusing the pre-trained {b.name} {path}")
        return path
    corpus_cfg = corpus_settings(settings, b.image_size)
    training.check_benchmark_disjoint(config, corpus_cfg)
    with distributed.primary_first("face corpus"):  # rendered once, by the primary
        corpus, corpus_path = face_corpus.load_face_corpus(os.path.join(root, "corpus"), corpus_cfg, log)
    training_dir = path + ".training"
    with distributed.primary_lock(training_dir, "face pre-training", wait=True, log=log):
        if training.has_converted(path, b.kind):
            log(f"[pretrain] reusing the pre-trained {b.name} {path}")
            return path
        outcome = pretrain(b, settings, corpus, training_dir, log, mesh, stop, t.settings_field)
        if outcome is None:
            return None
        variables, report = outcome
        report["corpus"]["file"] = os.path.basename(corpus_path)
        save(path, b, variables, report)
        artifacts.remove(training_dir)
    log(f"[pretrain] saved {path}")
    log(quality_summary(b.name, report["quality"]))
    return path


# ============================================================================================
# The command line
# ============================================================================================


def main(argv=None) -> int:
    import argparse

    from dtda_jax.core.cli import run_command

    parser = argparse.ArgumentParser(description="Pre-train on the synthetic face corpus the networks a "
                                     "config's runs start from (cached, as the runs use them); print their quality.")
    parser.add_argument("--config", required=True, help="config file with pre-training on, optionally with its "
                        "argument (configs/kdfas_synthetic_to_kiosk.py, configs/synthetic_to_kiosk_face_pretrained.py)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, e.g. --set kdfas.face_pretraining.steps=500 (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_command("pretrain_on_faces", lambda: pretrain_and_report(args), debug=args.debug,
                       stop_on_signals=True)


def pretrain_and_report(args) -> None:
    """The command: pre-train what the cache lacks, print each network's quality and path."""
    from dtda_jax import methods
    from dtda_jax.core.errors import UserError

    path, _, arg = args.config.partition(":")
    config = config_lib.load_config_file(path, *([arg] if arg else []))
    for assignment in args.set:
        try:
            key, value = config_lib.parse_assignment(assignment, example="kdfas.face_pretraining.steps=500")
            config_lib.set_field(config, key, value)
        except KeyError as err:
            raise UserError(f"--set {assignment!r}: {err} is not a config field.") from None
        except ValueError as err:
            raise UserError(str(err)) from None
    config_lib.validate_config(config)
    targets = methods.training_module(config.method.name).face_pretraining_targets(config, every_role=True)
    if not targets:
        raise UserError(f"{path} pre-trains nothing on faces (its pretrain_on_faces is off, or every network "
                        "it would pre-train has an init_checkpoint).")
    t0 = time.perf_counter()
    paths = {t.field: ensure_pretrained(config, t) for t in targets}
    print(f"\nPre-trained on faces ({time.perf_counter() - t0:.0f} s):")
    for t in targets:
        print(quality_summary(t.backbone.name, store.read_manifest(paths[t.field])["quality"]).replace(
            "[pretrain] ", "  "))
        print(f"    config.{t.field} = {paths[t.field]!r}")
