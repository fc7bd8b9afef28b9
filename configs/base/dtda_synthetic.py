"""Base of the DTDA configs on the built-in benchmark (configs/synthetic*.py): leave one
generated domain out, sized for a 2-core CPU.

The analogue of the paper's Protocol I: train on three domains, test on the fourth
(configs/base/synthetic_protocol.py: 16 + 24 people per domain). 64 x 64 images, batches of
3 domains x 2 classes x 8 = 48, the ResNet-18 student at full width, the teachers at the
benchmark's resolution. The teachers are the project's own: trained first on synthetic faces
of 240 other people through the benchmark's four cameras (dtda_jax/teachers/training.py, ~3
minutes, cached in data/teachers), or with `capture_diverse_teachers` of 384 people each video
through its own random capture pipeline (configs/synthetic_to_kiosk_capture_teachers.py); with
`own_teachers=False` and no converted checkpoint they are random networks (the run says so
loudly) and the distillation terms act as a fixed random-feature regulariser.
"""

from dtda_jax.config import apply_variant, load_base
from dtda_jax.methods.dtda import config as dtda
from dtda_jax.teachers.settings import capture_diverse_teacher_training_config

protocol = load_base(__file__, "synthetic_protocol.py")


def get_config(target: str, variant: str = "dtda", own_teachers: bool = True,
               capture_diverse_teachers: bool = False, face_pretrained_student: bool = False):
    c = dtda.default_config()
    apply_variant(c, variant or "dtda")

    # Protocol: three generated domains -> the held-out fourth (configs/base/synthetic_protocol.py).
    protocol.set_protocol(c, target)
    c.data.samples_per_group = 8  # batch 3 x 2 x 8 = 48
    c.data.eval_batch_size = 128
    c.data.augment_flip = True
    c.data.augment_crop_padding = 0.0625

    # Student: ResNet-18 at full width, float32, random init (or, with face_pretrained_student,
    # its encoder pre-trained on the capture-diverse face corpus: the stand-in for ImageNet).
    c.model.width = 64
    c.model.init_checkpoint = ""
    if face_pretrained_student:
        dtda.use_face_pretraining(c)

    # Domain classifier (Eq. 1) at a quarter width, 60 steps of SGD; attack: one signed step of 4/255.
    c.domain_classifier.width = 16
    c.domain_classifier.num_steps = 60
    c.domain_classifier.learning_rate = 0.05
    c.domain_classifier.samples_per_group = 16
    c.attack.epsilon = 4.0
    c.attack.num_steps = 1

    # Teachers at the benchmark's resolution: IResNet-r18 at half width, StarGAN D conv_dim 32.
    c.teachers.fr_arch = "r18"
    c.teachers.fr_width = 32
    c.teachers.fr_input_size = 64
    c.teachers.fa_image_size = 64
    c.teachers.fa_conv_dim = 32
    c.teachers.fa_repeat_num = 5
    if own_teachers:  # trained on the face corpus with the settings of teachers/settings.py
        dtda.use_own_teachers(c, capture_diverse_teacher_training_config() if capture_diverse_teachers else None)

    # Eq. 9: L = L_fas + 1 * L_fr + 1 * L_fa, KD at temperature 4 (tau^2-scaled).
    c.loss.lambda_fr = 1.0
    c.loss.lambda_fa = 1.0
    c.loss.temperature = 4.0

    # SGD momentum 0.9, weight decay 5e-4, lr 0.02 with 20 warm-up steps then cosine; 400 steps.
    c.optim.learning_rate = 0.02
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 20
    c.train.num_steps = 400
    c.train.log_every = 20
    c.train.eval_every = 100
    c.train.checkpoint_every = 100

    # Reported: HTER at the target's EER threshold, best checkpoint on the target (the papers'
    # convention); results.json also holds the last checkpoint's numbers.
    c.eval.threshold_policy = "target_eer"
    c.eval.selection = "best_on_target"
    return c
