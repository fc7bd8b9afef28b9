"""DTDA's frozen teachers: building and loading them (`frozen`), and the project's own teachers
trained on synthetic faces (`training`, with its jax-free `settings`)."""
