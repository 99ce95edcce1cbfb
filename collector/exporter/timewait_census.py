"""What the lean tier cannot see of timewait sockets, from the ground truth's census.

The lean probe counts hand-overs to timewait sockets and their 2MSL expiries, but not kills
(an RST, a SYN or connect() reusing the tuple, ``ss -K``, a namespace's exit: the kernel
cancels the timer, and only the generic timer hooks see that). So every census of all
namespaces is set against synfin's counters read just before it:

    kills = (hand-overs - expiries - alive) - (the same at the first census) - untracked expiries

where "alive" is the census's timewait sockets and untracked expiries are those of sockets
handed over before synfin started (alive in the first census, then gone). The result is
exact up to the sockets that changed while the census itself ran, and only ever grows: a
reading below the last one (such a race) is held at the last. TIME-WAIT and the timewait half
of FIN-WAIT-2 in ``synfin_tcp_connections`` come from the census too.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, replace

from synfin.exporter.groundtruth import Sample, Sampler
from synfin.records import abi
from synfin.records.counters import Counters

_HEADER = abi.events()
HANDOVERS = tuple(
    _HEADER[name]
    for name in ("TW_HANDOVER_FIN_WAIT2", "TW_HANDOVER_TIME_WAIT", "TW_HANDOVER_CLOSING")
)
EXPIRIES = (_HEADER["TW_END_EXPIRED"], _HEADER["TW_END_FIN_WAIT2_EXPIRED"])
UNTRACKED = _HEADER["TW_END_UNTRACKED"]
KILLED = _HEADER["TW_END_KILLED"]


def unaccounted(timewait: dict[tuple[int, int], int], alive: int, family: int) -> int:
    """Hand-overs minus expiries minus timewait sockets alive, for one family."""
    handed = sum(timewait.get((c, family), 0) for c in HANDOVERS)
    expired = sum(timewait.get((c, family), 0) for c in EXPIRIES)
    return handed - expired - alive


@dataclass
class TimewaitCensus:
    """Kills and timewait sockets for the lean tier, from an all-namespace ``Sampler``."""

    sampler: Sampler

    def __post_init__(self) -> None:
        self._origin: dict[int, int] | None = None  # unaccounted() at the first census
        self._kills: Tally[int] = Tally()  # per family, never decreasing
        self._seen: Sample | None = None

    @property
    def available(self) -> bool:
        """A census of every namespace has been taken (with synfin's counters beside it)."""
        sample = self.sampler.latest
        return self.sampler.scope == "all" and sample.ok and sample.snapshot is not None

    def _alive(self, sample: Sample, family: int) -> int:
        return sum(n for (_state, fam), n in sample.timewait.items() if fam == family)

    def _update(self, sample: Sample) -> None:
        if sample is self._seen:
            return
        self._seen = sample
        counts: dict[tuple[int, int], int] = sample.snapshot
        families = {fam for (_c, fam) in counts} | {fam for (_s, fam) in sample.timewait}
        now = {fam: unaccounted(counts, self._alive(sample, fam), fam) for fam in families}
        if self._origin is None:
            self._origin = now
            return
        for fam, value in now.items():
            kills = value - self._origin.get(fam, 0) - counts.get((UNTRACKED, fam), 0)
            self._kills[fam] = max(self._kills[fam], kills)

    def apply(self, counters: Counters) -> Counters:
        """``counters`` with the inferred kills and the census's timewait sockets added."""
        if not self.available:
            return counters
        sample = self.sampler.latest
        self._update(sample)
        timewait = dict(counters.timewait)
        for fam, kills in self._kills.items():
            if kills > 0:
                timewait[(KILLED, fam)] = timewait.get((KILLED, fam), 0) + kills
        sockets = dict(counters.sockets)
        for (state, fam), n in sample.timewait.items():
            sockets[(state, fam)] = sockets.get((state, fam), 0) + n
        return replace(counters, timewait=timewait, sockets=sockets, timewait_sockets_known=True)
