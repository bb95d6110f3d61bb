"""The capacity search: which load levels to run, one after the other, for a preset and scenario.

Capacity is the highest throughput that met the p99 objective with no failed
request. The search raises the number of users in steps of FACTOR until a
level fails the objective (or a request fails), or until throughput stops
rising (PATIENCE levels in a row with less than MIN_GAIN more than the best
before them: the server is saturated and more users would only queue; a single
such level can be a noisy neighbour's doing), or until the load generator is
the limit; then it narrows down between the last level that passed and the
first that failed, NARROW_STEPS times (geometric midpoints). If the first level
fails already, it steps down instead. --quick raises by QUICK_FACTOR, stops at
the first level without gain and does not narrow.

It starts where Little's law says the server saturates, from the calibration:
users = (the bound without the users' limit) x the cycle time, halved: 86 users
for the gevent preset on `io` here, 2 for sync, rather than the same 10 for
every preset. Measured on 2 CPUs shared with other work: 4 presets x 4
scenarios took 85 runs of 5 s, 11.6 minutes in all; ending a search at the first
level without gain took 65 runs and 9.8 minutes, but stopped gthread on `io` at
12 users and 167 requests/s, where it serves 400.
"""

import math
from dataclasses import dataclass, field

FACTOR = 2
QUICK_FACTOR = 4
NARROW_STEPS = 2
MIN_GAIN = 0.05
PATIENCE = 2
QUICK_PATIENCE = 1
MAX_USERS = 4000


@dataclass
class Level:
    users: int
    passed: bool  # p99 within the objective, no failed request
    rps: float
    generator_bound: bool = False


@dataclass
class Search:
    start: int
    quick: bool = False
    levels: list = field(default_factory=list)
    lowest_failed: int | None = None
    narrowed: int = 0

    @classmethod
    def from_prediction(cls, saturating_users, quick=False):
        """A search starting at half the users Little's law says saturate the server."""
        start = round(saturating_users / 2) if math.isfinite(saturating_users) else 10
        return cls(start=min(max(start, 1), MAX_USERS), quick=quick)

    @property
    def factor(self):
        return QUICK_FACTOR if self.quick else FACTOR

    def record(self, users, passed, rps, generator_bound=False):
        self.levels.append(Level(users, passed, rps, generator_bound))
        if not passed:
            self.lowest_failed = min(users, self.lowest_failed or users)

    @property
    def best(self):
        """The passing level with the most requests/s: the capacity; None if none passed."""
        passed = [level for level in self.levels if level.passed]
        return max(passed, key=lambda level: level.rps, default=None)

    def next_users(self):
        """The next level to run, or None when the search is over."""
        if not self.levels:
            return self.start
        tried = {level.users for level in self.levels}
        if self.best is None:  # every level so far failed: step down
            lower = min(tried) // self.factor
            return lower if lower >= 1 else None
        if self.lowest_failed is None:
            return self._raise(self.levels[-1])
        if self.quick or self.narrowed >= NARROW_STEPS:
            return None
        below = [
            each.users for each in self.levels if each.passed and each.users < self.lowest_failed
        ]
        if not below:
            return None
        middle = round(math.sqrt(max(below) * self.lowest_failed))
        if not max(below) < middle < self.lowest_failed or middle in tried:
            return None
        self.narrowed += 1
        return middle

    def _raise(self, last):
        if last.generator_bound or last.users >= MAX_USERS:
            return None  # more users would not make more load
        patience = QUICK_PATIENCE if self.quick else PATIENCE
        if self._levels_without_gain() >= patience:
            return None  # saturated: more users would only queue
        return min(last.users * self.factor, MAX_USERS)

    def _levels_without_gain(self):
        """How many levels in a row, the last included, added less than MIN_GAIN to the best
        level before each of them."""
        count = 0
        for index in range(len(self.levels) - 1, 0, -1):
            best_before = max(level.rps for level in self.levels[:index])
            if self.levels[index].rps >= best_before * (1 + MIN_GAIN):
                break
            count += 1
        return count
