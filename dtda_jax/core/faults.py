"""Named points of a run where a test can make this process signal itself.

`DTDA_JAX_FAULT="<point>@<n>:<SIGNAL>[+<ms>]"` sends <SIGNAL> (KILL, TERM, INT) to this
process the <n>-th time it reaches <point> (default the first), after <ms> milliseconds from
a background thread when given (so the signal lands inside the work that follows, e.g. a
checkpoint being written). The kills are real: what the tests then check is what a real
preemption or crash leaves behind. Unset (always, outside tests), `point` costs one lookup.
"""

from __future__ import annotations

import os
import re
import signal
import threading

ENV = "DTDA_JAX_FAULT"
_SPEC = re.compile(r"(?P<point>.+?)(?:@(?P<n>\d+))?:(?P<signal>KILL|TERM|INT)(?:\+(?P<ms>\d+))?")
_reached: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    match = _SPEC.fullmatch(spec)
    if match is None or match["point"] != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != int(match["n"] or 1):
        return
    signum = getattr(signal, f"SIG{match['signal']}")
    if match["ms"]:
        threading.Timer(int(match["ms"]) / 1000, os.kill, (os.getpid(), signum)).start()
    else:
        os.kill(os.getpid(), signum)
