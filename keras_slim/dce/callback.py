"""Dynamic Channel Execution (Spasov & Liò, 2019): train with a bandit-chosen fraction
of channels, then keep the most salient ones.

At every training step `CUCBCallback` lets one CUCB bandit per gated channel group
(keras_slim.dce.bandit) pick the active channels, writes the 0/1 masks into the model's
ChannelGate layers (keras_slim.dce.gates), and after the step feeds the Taylor saliency
the gates recorded in the backward pass (keras_slim.dce.saliency) to the bandit as the
reward of each active channel. `dce_plan` turns the bandits' mean saliencies into a
ChannelPlan and `run_dce` does the whole pipeline in one call:
gate -> fit with the callback -> plan -> strip gates -> rebuild -> fine-tune.

Reward normalisation: per group and step the active channels' saliencies are divided
by their mean (so rewards average 1). Raw Taylor values shrink as the loss falls and
differ by orders of magnitude between layers; dividing by the step mean makes rewards
comparable over training and across layers, keeps the exploration coefficient c
meaningful (c = 1 is on the scale of the rewards) and cancels the 1/B and loss-scale
factors of dL/dh. A step whose active saliencies are all zero gives zero rewards.

Coupled channels (Add / SE): a group's channel is one arm; its saliency is the sum over
the group's gates (each gate measures one branch's share of the same channel). When the
gates of a group hold different subsets of its channels (ResNet option A: the stream's
stage-1 tensors hold 16 of its 64 channels), the bandit plays a fraction p of every
*segment* (channels held by the same gates; keras_slim.dce.bandit.segments), so every
gated tensor has p of its channels active, as in the paper's "fraction p of each layer".
"""
import json
import os

import numpy as np

from keras_slim.compat import keras
from keras_slim.core.walk import iter_layers
from keras_slim.dce.bandit import CUCB, _is_int, _is_real, active_count, segments
from keras_slim.dce.gates import gates_of

POLICIES = ("cucb", "random", "fixed")
_STATE_FORMAT = "keras_slim.CUCBCallback/1"


def _check_fraction(value, argument="fraction"):
    if not _is_real(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{argument} must be in (0, 1], got {value!r}.")


class CUCBCallback(keras.callbacks.Callback):
    """Chooses the active channels of a gated model at every training step.

    Args:
      fraction: share p of each group's channels active per step, in (0, 1]: a float for
        every group, a dict {group name: p} (a group is named after its first conv;
        groups not in the dict get the gates' fraction), or None for the fraction
        stored in the gates by gate_model.
      warmup_steps: steps tau (>= 0) of uniformly random active sets first.
      exploration: the CUCB coefficient c (>= 0).
      policy: "cucb" (default); "random" (a new random set every step: the paper's
        baseline); "fixed" (random during warm-up, then the top-p by mean saliency,
        fixed). All policies keep learning the mean saliency of the channels they play.
      discount: None or gamma in (0, 1) for discounted CUCB.
      seed: seeds the bandits (group i uses seed + i).
      checkpoint: if set, the bandit state is written to `<checkpoint>.bandit.json` at
        the end of every epoch (restore it with `restore(checkpoint)`).
      save_freq: "epoch", or an int N: also save every N training batches (match the
        save_freq of keras.callbacks.BackupAndRestore so weights, optimizer and bandit
        resume from the same step).

    Masks are set to 1 (all channels) for validation and at the end of training, so
    evaluating the gated model evaluates the full network.
    """

    def __init__(self, fraction=None, warmup_steps=100, exploration=1.0, policy="cucb",
                 discount=None, seed=0, checkpoint=None, save_freq="epoch"):
        super().__init__()
        if save_freq != "epoch" and (not _is_int(save_freq) or save_freq < 1):
            raise ValueError(f"save_freq must be 'epoch' or an int >= 1, got {save_freq!r}.")
        if isinstance(fraction, dict):
            for name, value in fraction.items():
                _check_fraction(value, f"fraction[{name!r}]")
        elif fraction is not None:
            _check_fraction(fraction)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}.")
        if not _is_int(seed):
            raise ValueError(f"seed must be an int, got {seed!r}.")
        CUCB(1, warmup_steps=warmup_steps, exploration=exploration,
             discount=discount)  # validates those arguments, naming them
        self.fraction = fraction
        self.warmup_steps = int(warmup_steps)
        self.exploration = float(exploration)
        self.policy = policy
        self.discount = discount
        self.seed = seed
        self.checkpoint = checkpoint
        self.save_freq = save_freq
        self._batches_seen = 0
        self.bandits = {}      # group name -> CUCB
        self.fixed = {}        # group name -> active indices, policy "fixed"
        self.groups = {}       # group name -> [(gate, channel indices in the group)]
        self.active = {}       # group name -> active indices of the current step
        self._attached = None

    # --- wiring to a gated model --------------------------------------------------------
    def attach(self, model):
        """Read the gates of `model` and create (or check restored) bandits. Called by
        fit; call it yourself to use the callback outside fit."""
        gates = gates_of(model)
        if not gates:
            raise ValueError(f"model {model.name!r} has no ChannelGate layer; gate it with "
                             "keras_slim.dce.gates.gate_model first.")
        groups = {}
        for gate in gates:
            gate.controlled = True  # its channels are chosen every step (see ChannelGate)
            channels = int(gate.mask.shape[0])
            index = np.arange(channels) if gate.channel_index is None \
                else np.asarray(gate.channel_index, dtype=np.int64)
            groups.setdefault(gate.group, []).append((gate, index))
        if isinstance(self.fraction, dict):
            unknown = sorted(set(self.fraction) - set(groups))
            if unknown:
                raise ValueError(f"fraction names groups {unknown} that model "
                                 f"{model.name!r} does not gate; its groups are "
                                 f"{sorted(groups)}.")
        for i, (name, members) in enumerate(groups.items()):
            size = max(int(index.max()) + 1 for _, index in members)
            segs = segments([index for _, index in members], size)
            fraction = self._fraction_of(name, members)
            bandit = self.bandits.get(name)
            if bandit is not None:
                if bandit.num_arms != size:
                    raise ValueError(f"restored bandit state of group {name!r} has "
                                     f"{bandit.num_arms} channels, the model's gates "
                                     f"{size}. Was it saved for another model?")
                if not bandit.segments_saved:  # a state from before segments existed
                    if len(segs) > 1:
                        bandit.set_segments(segs, [active_count(len(s), fraction)
                                                   for s in segs])
                elif _partition(arms for arms, _ in bandit.segment_counts()) != \
                        _partition(segs):
                    raise ValueError(
                        f"restored bandit state of group {name!r} splits its {size} "
                        f"channels into segments {_sizes(bandit.segment_counts())}, the "
                        f"model's gates into {[len(s) for s in segs]}. Was it saved for "
                        f"another model?")
                continue
            self.bandits[name] = CUCB(size, fraction=fraction,
                                      warmup_steps=self.warmup_steps,
                                      exploration=self.exploration,
                                      discount=self.discount, seed=self.seed + i,
                                      segments=segs)
        extra = sorted(set(self.bandits) - set(groups))
        if extra:
            raise ValueError(f"restored bandit state has groups {extra} that model "
                             f"{model.name!r} does not gate.")
        for name, members in groups.items():
            k = self.bandits[name].k
            full = [gate.name for gate, _ in members if gate.fraction >= 1.0]
            if full and k < self.bandits[name].num_arms:
                raise ValueError(
                    f"gates {full} were made with fraction 1 (every channel active, no "
                    f"mask applied in training), but the callback plays {k} of "
                    f"{self.bandits[name].num_arms} channels of group {name!r}: pass "
                    "gate_model the fraction you train with.")
        # (variable, group, channel_index): compact layers' active positions in a tensor
        self.indexed = []
        for _, layer in iter_layers(model):
            for attribute, (group, channels) in getattr(layer, "index_groups", {}).items():
                variable = getattr(layer, attribute)
                channels = None if channels is None else np.asarray(channels, np.int64)
                k = self._played(group, channels)
                if int(variable.shape[0]) != k:
                    raise ValueError(
                        f"layer {layer.name!r} was gated for compact execution with "
                        f"{int(variable.shape[0])} active channels of group {group!r}, "
                        f"but the callback plays {k}: pass the gate_model fraction to "
                        "CUCBCallback (or fraction=None).")
                self.indexed.append((variable, group, channels))
        self.groups = groups
        self._attached = model

    def _played(self, group, channels):
        """Active channels per step among `channels` (None: all) of a group."""
        bandit = self.bandits[group]
        if channels is None:
            return bandit.k
        held = set(channels.tolist())
        return sum(k if set(arms.tolist()) <= held else 0 for arms, k in bandit.segment_counts()
                   if held & set(arms.tolist()))

    def _fraction_of(self, name, members):
        if isinstance(self.fraction, dict) and name in self.fraction:
            return float(self.fraction[name])
        if _is_real(self.fraction):
            return float(self.fraction)
        return float(members[0][0].fraction)

    def _choose(self, name):
        bandit = self.bandits[name]
        if self.policy == "random":
            return bandit.random_select()
        if self.policy == "fixed":
            if bandit.in_warmup:
                return bandit.random_select()
            if name not in self.fixed:
                self.fixed[name] = bandit.best()
            return self.fixed[name]
        return bandit.select()

    def _set_masks(self, group_masks):
        for name, members in self.groups.items():
            for gate, index in members:
                gate.mask.assign(group_masks[name][index].astype(np.float32))

    def all_on(self):
        """Every channel active (evaluation, export)."""
        self._set_masks({n: np.ones(b.num_arms) for n, b in self.bandits.items()
                         if n in self.groups})

    def begin_step(self):
        """Choose this step's active channels and write the masks."""
        masks = {}
        for name in self.groups:
            self.active[name] = np.asarray(self._choose(name), dtype=np.int64)
            masks[name] = np.zeros(self.bandits[name].num_arms)
            masks[name][self.active[name]] = 1.0
        self._set_masks(masks)
        for variable, group, channels in self.indexed:
            on = masks[group] if channels is None else masks[group][channels]
            variable.assign(np.flatnonzero(on).astype(np.int32))

    def end_step(self):
        """Feed the saliency recorded in the backward pass to the bandits."""
        for name, members in self.groups.items():
            bandit = self.bandits[name]
            saliency = np.zeros(bandit.num_arms)
            for gate, index in members:
                np.add.at(saliency, index, np.asarray(gate.saliency.numpy(), np.float64))
            active = self.active[name]
            rewards = saliency[active]
            if not np.isfinite(rewards).all():
                continue  # a diverged step says nothing about the channels
            mean = rewards.mean()
            rewards = rewards / mean if mean > 0 else np.zeros_like(rewards)
            bandit.update(active, rewards)

    # --- Keras hooks ----------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        steps = getattr(self.model, "steps_per_execution", None)
        if steps is None:
            steps = getattr(self.model, "_steps_per_execution", None)
        if hasattr(steps, "numpy"):  # a variable (a MirroredVariable under tf.distribute)
            steps = steps.numpy()
        if steps is not None and int(np.asarray(steps)) > 1:
            raise ValueError("CUCBCallback needs steps_per_execution=1 (it changes the "
                             f"masks between steps), got {int(np.asarray(steps))}.")
        if self._attached is not self.model:
            self.attach(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        self.begin_step()

    def on_train_batch_end(self, batch, logs=None):
        self.end_step()
        self._batches_seen += 1
        if self.checkpoint and self.save_freq != "epoch" \
                and self._batches_seen % self.save_freq == 0:
            self.save(self.checkpoint)

    def on_test_begin(self, logs=None):
        self.all_on()

    def on_epoch_end(self, epoch, logs=None):
        if self.checkpoint:
            self.save(self.checkpoint)

    def on_train_end(self, logs=None):
        self.all_on()

    # --- state ------------------------------------------------------------------------
    def get_state(self):
        return {"format": _STATE_FORMAT, "policy": self.policy,
                "bandits": {n: b.get_state() for n, b in self.bandits.items()},
                "fixed": {n: [int(i) for i in v] for n, v in self.fixed.items()}}

    def set_state(self, state):
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError(f"state is not a CUCBCallback state (missing 'format': "
                             f"{_STATE_FORMAT!r}).")
        self.bandits = {n: CUCB.from_state(s) for n, s in state["bandits"].items()}
        self.fixed = {n: np.asarray(v, dtype=np.int64) for n, v in state["fixed"].items()}
        if self._attached is not None:
            self.attach(self._attached)  # re-check the restored groups against the gates
        return self

    @staticmethod
    def state_path(checkpoint):
        return f"{os.fspath(checkpoint)}.bandit.json"

    def save(self, checkpoint):
        """Write the bandit state next to a weights checkpoint: `<checkpoint>.bandit.json`."""
        path = self.state_path(checkpoint)
        # Per process: under multi-worker training every worker writes the same state.
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.get_state(), f)
        os.replace(tmp, path)  # never leave a half-written state behind
        return path

    def restore(self, checkpoint):
        path = self.state_path(checkpoint)
        if not os.path.exists(path):
            raise FileNotFoundError(f"bandit state file '{path}' does not exist.")
        with open(path) as f:
            try:
                state = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"bandit state file '{path}' is not valid JSON: {e}") \
                    from None
        return self.set_state(state)


def _partition(segments):
    """A partition of arms into segments, comparable whatever the segments' order."""
    return sorted(tuple(sorted(int(a) for a in arms)) for arms in segments)


def _sizes(segment_counts):
    return [len(arms) for arms, _ in segment_counts]
