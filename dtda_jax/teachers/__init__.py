"""Networks that carry face priors: DTDA's frozen teachers, building and loading them
(`frozen`); the project's own teachers trained on synthetic faces (`training`); backbones
pre-trained on the same faces as students' initialisation (`pretraining`); the jax-free
settings of both (`settings`)."""
