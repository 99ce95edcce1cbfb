"""What the kernel let a probe observe: the one description the engine is built from.

A live command takes it from the loaded probe; a recording carries it in its header, so replay
builds the same engine the live view had.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Capability names shared by the feature detector (synfin.kernel.features) and the engine.
TIMEWAIT_CAPABILITY = "timewait and request timers"
STREAM_CAPABILITY = "event stream"


@dataclass(frozen=True)
class KernelDescription:
    capabilities: Mapping[str, bool] = field(default_factory=dict)  # name -> available
    # enum sk_rst_reason as lower snake_case names ("tcp_abort_on_close"), where BTF has them
    reset_reasons: Mapping[int, str] = field(default_factory=dict)

    @property
    def sees_timewait(self) -> bool:
        """Whether timewait sockets are visible at all (recordings that do not say: yes)."""
        return self.capabilities.get(TIMEWAIT_CAPABILITY, True)
