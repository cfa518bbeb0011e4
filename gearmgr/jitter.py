"""The random spread of delays (reconnect backoff, crash-loop backoff, lifetime jitter).

Drawn from the operating system (``random.SystemRandom``), never from the ``random`` module's
shared generator: that one's state belongs to the program that embeds gearmgr (a seeded
program's sequence is not moved by a reconnect; Hypothesis, which checks that strategies leave
it alone, sees no change when a worker or session of an earlier test backs off). No state of
its own either, so a forked process draws differently from its parent without a reseed.
"""

from __future__ import annotations

import random

#: ``uniform(a, b)``: a float in [a, b].
uniform = random.SystemRandom().uniform
