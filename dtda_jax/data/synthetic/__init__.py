"""Procedural face anti-spoofing (FAS) renderer: faces, attack media, camera domains.

Pure numpy (plus Pillow for JPEG), fully vectorised: every primitive is an analytic
signed-distance / noise function evaluated on a coordinate grid, so the same face can
be rendered directly in camera coordinates (live), in the coordinates of a sheet of
paper held in front of the camera (print / cut photo) or on the pixel lattice of a
screen (replay).

Scene model
-----------
* **Identity** (:class:`IdentityParams`, :func:`sample_identity`): face shape (jaw-
  tapered ellipse), skin tone + per-identity skin micro texture, eyes (position, size,
  iris colour), brows, nose, mouth/lips, hair (colour + style: short, medium, long,
  receding; optional fringe), ears, optional glasses, optional beard (male),
  wrinkles/grey hair (not young), shirt.  Binary attributes in :data:`ATTRIBUTES`
  order (the StarGAN / CelebA order).
* **Video** (:func:`render_video`): per-frame pose (in-plane rotation, shift, scale,
  small yaw => parallax of the inner features), expression (blink, mouth opening,
  smile, gaze) and lighting (key-light direction and intensity => Lambertian shading
  with a head / nose normal model, skin specular, cast shadow on the backdrop).
* **Attacks** (:data:`ATTACK_TYPES`):

  - ``print``: a frontal photo of the identity printed on paper (reduced gamut and
    contrast, CMY halftone screen, paper tint and fibre texture, print blur), held by
    hand (rigid jitter, perspective, paper bend with shading); paper edges can be
    visible.  No 3D shading change, no blinking.
  - ``replay``: a recorded video of the identity shown on a screen (content quantised
    to the screen pixel lattice, RGB sub-pixel stripes box-integrated by the camera
    pixels => moire, display gamma / white-point shift, emissive brightness, specular
    glare blob, bezel visible near the borders).
  - ``cut_photo``: a print with the eye regions cut out, worn in front of the real
    face: the live eyes (which blink) show through the holes, the hole rims cast a
    thin shadow.

* **Domains** (:data:`DOMAINS`, :data:`DOMAIN_PARAMS`): each domain is a different
  "dataset": camera colour response (white balance, saturation, tone curve, black
  level), sensor noise, optical blur, sensor resolution (captured lower, upsampled),
  ISP sharpening, JPEG quality, illumination level/colour, vignetting, typical
  backgrounds, its own attack instruments (printer halftone, screen pitch/gamma) and
  its own mix of attack types.  The capture quirks are deliberately of comparable or
  larger magnitude than the spoof cues, and some mimic another domain's spoof cues
  (``webcam`` is soft and low contrast like a print; ``kiosk``'s tone curve and warm
  cast resemble a replay's gamma shift; ``phone``'s sharpening halos and JPEG blocks
  resemble screen texture).

Rendering is supersampled (3x the output size up to 128 px, 2x above) and
area-averaged down by the camera model, on top of analytic anti-aliasing of every
edge and pattern (shape coverage, box-filtered screen stripes, damped halftone dots).
The attack's source material (the printed photo / replayed recording) was shot in
the domain's own room half of the time (as in OULU-NPU) and elsewhere otherwise, so
the background is not a free spoof cue.

Randomness: identities come from ``np.random.default_rng([seed, 1, identity_id])``,
each video from ``np.random.default_rng([seed, 2, video_id, domain, attack_type])``
(plus ``[seed, 3, video_id]`` for its attack source material), so generation is
deterministic and independent of the order in which videos are made.  Results are
bit-identical on one machine / numpy / Pillow build; other builds may differ in the
last bits of transcendental functions.

Modules
-------
* :mod:`.domains`: :data:`ATTACK_TYPES`, :data:`DOMAINS`, :class:`DomainParams`,
  :data:`DOMAIN_PARAMS`, :func:`domain_table`.
* :mod:`.identity`: :data:`ATTRIBUTES`, :class:`IdentityParams`, :func:`sample_identity`
  (hair styles, skin / iris / hair palettes).
* :mod:`.raster`: drawing primitives (smoothstep, signed distances, coverage, compositing,
  texture lookups, resampling, blur, box-filtered stripes).
* :mod:`.face`: :class:`~.face.FrameState` and the person renderer.
* :mod:`.scene`: backgrounds, cast shadow, per-frame live / photo states, hand-held
  medium homographies.
* :mod:`.media`: print reflectance (halftone, paper) and screen emission (sub-pixels).
* :mod:`.camera`: the domain camera (colour matrix, capture pipeline, JPEG).
* :mod:`.video`: :func:`render_video`, :func:`default_supersample`, :func:`contact_sheet`.
* :mod:`.benchmark`: the built-in benchmark as a TFDS builder (:class:`~.benchmark.SyntheticFas`);
  :mod:`.face_corpus`: the live-face corpus the project's teachers are trained on.  Neither
  is imported here (the builder needs TFDS): import them by module.
"""

from __future__ import annotations

from dtda_jax.data.synthetic.domains import ATTACK_TYPES, DOMAIN_PARAMS, DOMAINS, DomainParams, domain_table
from dtda_jax.data.synthetic.identity import ATTRIBUTES, IdentityParams, sample_identity
from dtda_jax.data.synthetic.video import contact_sheet, default_supersample, render_video

__all__ = [
    "ATTRIBUTES",
    "ATTACK_TYPES",
    "DOMAINS",
    "DOMAIN_PARAMS",
    "DomainParams",
    "IdentityParams",
    "sample_identity",
    "render_video",
    "default_supersample",
    "domain_table",
    "contact_sheet",
]
