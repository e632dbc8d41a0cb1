"""Combinatorial UCB (CUCB; Chen, Wang & Yuan, ICML 2013) over channels.

Pure numpy, no Keras: one bandit chooses which `k` of `num_arms` channels of a layer
are active at each training step (Dynamic Channel Execution, Spasov & Liò 2019).

At round t (1-based) the score of arm i is

    mu_i + c * sqrt(3 ln t / (2 T_i))

with T_i the number of rounds arm i was played and mu_i the mean of its observed
rewards; arms never played score +inf and go first. During the first `warmup_steps`
rounds the active set is drawn uniformly at random (seeded).

With `discount` = gamma in (0, 1) every update first multiplies all T_i and reward sums
by gamma (discounted UCB, Garivier & Moulines 2011), and t is replaced by
1 + the discounted number of past rounds, so old observations fade for every arm alike.
"""
import math
import numbers

import numpy as np

_STATE_FORMAT = "keras_slim.CUCB/1"


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def active_count(num_arms, fraction):
    """Active arms for a fraction: rounded half up, at least one."""
    return int(min(num_arms, max(1, math.floor(fraction * num_arms + 0.5))))


def segments(channel_sets, num_arms):
    """Split arms 0..num_arms-1 into segments: arms held by the same channel sets (e.g. the
    tensors of a coupled group: a ResNet option-A stream holds 16 channels in stage 1, 64
    in stage 3). Playing a fixed count per segment gives every set a fixed count.
    Returns sorted index arrays, ordered by their first arm."""
    signature = [[] for _ in range(num_arms)]
    for n, channels in enumerate(channel_sets):
        for arm in sorted({int(c) for c in channels}):
            signature[arm].append(n)
    by_signature = {}
    for arm, sig in enumerate(signature):
        by_signature.setdefault(tuple(sig), []).append(arm)
    return sorted((np.asarray(arms, dtype=np.int64) for arms in by_signature.values()),
                  key=lambda arms: arms[0])


class CUCB:
    """Top-k combinatorial UCB with random warm-up and optional discounting.

    Args:
      num_arms: number of arms (channels).
      fraction: share of arms active per round, in (0, 1]. Ignored if `k` is given.
      warmup_steps: rounds (>= 0) of uniformly random active sets before UCB starts.
      exploration: the coefficient c (>= 0) of the confidence term.
      discount: None (plain means) or gamma in (0, 1).
      seed: seed of the random warm-up draws and of tie-breaking.
      k: number of active arms per round, in [1, num_arms].
      segments: None, or index arrays partitioning the arms (see `segments`): then
        active_count(len(segment), fraction) arms are played in each segment.
    """

    def __init__(self, num_arms, fraction=0.5, warmup_steps=0, exploration=1.0,
                 discount=None, seed=None, k=None, segments=None):
        if not _is_int(num_arms) or num_arms < 1:
            raise ValueError(f"num_arms must be an int >= 1, got {num_arms!r}.")
        if k is None:
            if not _is_real(fraction) or not 0.0 < fraction <= 1.0:
                raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
            k = active_count(num_arms, fraction)
        elif not _is_int(k) or not 1 <= k <= num_arms:
            raise ValueError(f"k must be an int in [1, num_arms={num_arms}], got {k!r}.")
        if not _is_int(warmup_steps) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}.")
        if not _is_real(exploration) or exploration < 0:
            raise ValueError(f"exploration must be a finite number >= 0, got {exploration!r}.")
        if discount is not None and (not _is_real(discount) or not 0.0 < discount < 1.0):
            raise ValueError(f"discount must be None or in (0, 1), got {discount!r}.")
        self.num_arms = int(num_arms)
        self.k = int(k)
        self.warmup_steps = int(warmup_steps)
        self.exploration = float(exploration)
        self.discount = None if discount is None else float(discount)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.t = 0                                # rounds observed (update calls)
        self.T = np.zeros(self.num_arms)          # (discounted) plays per arm
        self.sums = np.zeros(self.num_arms)       # (discounted) reward sums
        self.mu = np.zeros(self.num_arms)         # mean observed reward
        self.rounds = 0.0                         # (discounted) past rounds, for ln t
        self.segments = None                      # None: one segment, k arms
        self.segments_saved = True                # False: restored from a pre-segment state
        if segments is not None:
            self.set_segments(segments, [active_count(len(s), fraction) for s in segments])

    def set_segments(self, segments, counts):
        """Play counts[i] arms of segments[i] per round (k becomes their sum)."""
        arms = np.sort(np.concatenate([np.asarray(s, dtype=np.int64) for s in segments]))
        if not np.array_equal(arms, np.arange(self.num_arms)):
            raise ValueError(f"segments must partition the {self.num_arms} arms.")
        if any(not _is_int(c) or not 1 <= c <= len(s) for s, c in zip(segments, counts)):
            raise ValueError(f"segment counts {list(counts)} do not fit the segments' sizes "
                             f"{[len(s) for s in segments]}.")
        if len(segments) == 1:  # exactly the plain top-k
            self.segments, self.k = None, int(counts[0])
            return
        self.segments = [(np.asarray(s, dtype=np.int64), int(c))
                         for s, c in zip(segments, counts)]
        self.k = sum(c for _, c in self.segments)

    # --- choosing ---------------------------------------------------------------------
    @property
    def in_warmup(self):
        return self.t < self.warmup_steps

    def scores(self):
        """UCB value of every arm for the coming round; +inf for untried arms."""
        t = 1.0 + self.rounds
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.exploration * np.sqrt(3.0 * math.log(t) / (2.0 * self.T))
        return np.where(self.T > 0, self.mu + np.nan_to_num(bonus, nan=0.0), np.inf)

    def top_k(self, values):
        """Indices of the k largest values; ties broken at random (seeded) so equal
        arms (e.g. all untried) are not always taken in index order."""
        values = np.asarray(values, dtype=np.float64)
        chosen = []
        for arms, k in self.segment_counts():
            order = np.lexsort((self.rng.random(len(arms)), -values[arms]))
            chosen.append(arms[order[:k]])
        return np.sort(np.concatenate(chosen))

    def random_select(self):
        return np.sort(np.concatenate([arms[self.rng.choice(len(arms), size=k, replace=False)]
                                       for arms, k in self.segment_counts()]))

    def segment_counts(self):
        """[(arms, count)] per segment (one segment of all arms if none were set)."""
        return self.segments or [(np.arange(self.num_arms), self.k)]

    def select(self):
        """Sorted indices of the arms to play this round."""
        if self.in_warmup:
            return self.random_select()
        return self.top_k(self.scores())

    def best(self):
        """The k arms with the highest mean reward (exploitation only)."""
        return self.top_k(np.where(self.T > 0, self.mu, -np.inf))

    # --- learning ---------------------------------------------------------------------
    def update(self, active_indices, rewards):
        """Record one round: rewards[j] was observed for arm active_indices[j]."""
        idx = np.asarray(active_indices).reshape(-1)
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"active_indices must be integers, got dtype {idx.dtype}.")
        idx = idx.astype(np.int64)
        if len(idx) != len(rewards):
            raise ValueError(f"rewards has {len(rewards)} values for {len(idx)} "
                             "active_indices.")
        if len(np.unique(idx)) != len(idx) or (idx < 0).any() or (idx >= self.num_arms).any():
            raise ValueError(f"active_indices must be unique and in [0, {self.num_arms}), "
                             f"got {idx.tolist()}.")
        if not np.isfinite(rewards).all():
            raise ValueError("rewards contains NaN or inf.")
        if self.discount is None:
            self.T[idx] += 1.0
            # Incremental mean: exact, no growing sums.
            self.mu[idx] += (rewards - self.mu[idx]) / self.T[idx]
            self.sums[idx] += rewards
            self.rounds += 1.0
        else:
            g = self.discount
            self.T *= g
            self.sums *= g
            self.T[idx] += 1.0
            self.sums[idx] += rewards
            played = self.T > 0
            self.mu = np.where(played, self.sums / np.where(played, self.T, 1.0), 0.0)
            self.rounds = g * self.rounds + 1.0
        self.t += 1

    # --- checkpoints ------------------------------------------------------------------
    def get_state(self):
        """A JSON-able dict with everything needed to resume, RNG included."""
        return {"format": _STATE_FORMAT, "num_arms": self.num_arms, "k": self.k,
                "warmup_steps": self.warmup_steps, "exploration": self.exploration,
                "discount": self.discount, "seed": self.seed, "t": self.t,
                "rounds": self.rounds, "T": self.T.tolist(), "sums": self.sums.tolist(),
                "mu": self.mu.tolist(), "rng": self.rng.bit_generator.state,
                "segments": None if self.segments is None else
                [[arms.tolist(), k] for arms, k in self.segments]}

    def set_state(self, state):
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError(f"state is not a CUCB state (missing 'format': "
                             f"{_STATE_FORMAT!r}).")
        if int(state["num_arms"]) != self.num_arms:
            raise ValueError(f"state has {state['num_arms']} arms, this bandit "
                             f"{self.num_arms}.")
        self.k = int(state["k"])
        self.warmup_steps = int(state["warmup_steps"])
        self.exploration = float(state["exploration"])
        self.discount = None if state["discount"] is None else float(state["discount"])
        self.seed = state.get("seed")
        self.t = int(state["t"])
        self.rounds = float(state["rounds"])
        for name in ("T", "sums", "mu"):
            value = np.asarray(state[name], dtype=np.float64)
            if value.shape != (self.num_arms,):
                raise ValueError(f"state[{name!r}] has shape {value.shape}, expected "
                                 f"({self.num_arms},).")
            setattr(self, name, value.copy())
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.segments = None
        # States saved before segments existed lack the key; the model's gates decide.
        self.segments_saved = "segments" in state
        if state.get("segments"):
            self.set_segments([s for s, _ in state["segments"]],
                              [c for _, c in state["segments"]])
        return self

    @classmethod
    def from_state(cls, state):
        if not isinstance(state, dict) or "num_arms" not in state:
            raise ValueError("state is not a CUCB state.")
        return cls(int(state["num_arms"]), k=int(state["k"])).set_state(state)

    def __repr__(self):
        return (f"CUCB(num_arms={self.num_arms}, k={self.k}, t={self.t}, "
                f"warmup_steps={self.warmup_steps}, exploration={self.exploration}, "
                f"discount={self.discount})")
