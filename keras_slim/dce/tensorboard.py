"""TensorBoard pictures of Dynamic Channel Execution: which channels the bandit plays.

`ActiveChannelLogger(cucb_callback, log_dir)` writes, at the end of every epoch (and
every `every_steps` training steps if given):

- image `dce/active_share`: one row per gated group, one column per channel, brightness =
  share of the steps so far in which the channel was active (T / t). Rows are padded
  to the widest group with black; each cell is `cell` pixels square so small nets stay
  readable.
- image `dce/current_mask`: the same layout, white = active in the last step.
- histograms `dce/mean_saliency/<group>`: the bandit's μ̂ per channel (the reward scale:
  rewards are normalised to mean 1 per step, see keras_slim.dce).

List it after the CUCBCallback in `callbacks=[...]` so it sees the step's final state.
"""
import os

import numpy as np
import tensorflow as tf

from keras_slim.compat import keras


def _grid(rows, cell):
    """(groups, max channels) values in [0, 1] -> a (1, H, W, 1) uint8 image batch."""
    width = max(len(r) for r in rows)
    grid = np.zeros((len(rows), width), np.float32)
    for i, row in enumerate(rows):
        grid[i, :len(row)] = row
    image = np.kron(np.clip(grid, 0.0, 1.0), np.ones((cell, cell), np.float32))
    return (255 * image).astype(np.uint8)[None, :, :, None]


class ActiveChannelLogger(keras.callbacks.Callback):
    """Writes the active-channel maps of a keras_slim.dce.CUCBCallback to TensorBoard."""

    def __init__(self, cucb_callback, log_dir, every_steps=None, cell=4):
        super().__init__()
        if every_steps is not None and (isinstance(every_steps, bool)
                                        or not isinstance(every_steps, int)
                                        or every_steps < 1):
            raise ValueError(f"every_steps must be None or an int >= 1, got {every_steps!r}.")
        if isinstance(cell, bool) or not isinstance(cell, int) or cell < 1:
            raise ValueError(f"cell must be an int >= 1, got {cell!r}.")
        self.source = cucb_callback
        self.log_dir = os.fspath(log_dir)
        self.every_steps = every_steps
        self.cell = cell
        self.writer = None
        self.step = 0

    def images(self):
        """{name: (1, H, W, 1) uint8 image} of the current bandit state."""
        bandits = self.source.bandits
        if not bandits:
            raise ValueError("the CUCBCallback has no bandit yet: fit (or attach) first.")
        names = list(bandits)
        share = [bandits[n].T / max(bandits[n].t, 1) for n in names]
        current = []
        for n in names:
            row = np.zeros(bandits[n].num_arms, np.float32)
            row[self.source.active.get(n, [])] = 1.0
            current.append(row)
        return {"dce/active_share": _grid(share, self.cell),
                "dce/current_mask": _grid(current, self.cell)}

    def write(self, step):
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(self.log_dir)
        with self.writer.as_default(step=step):
            for name, image in self.images().items():
                tf.summary.image(name, image)
            for group, bandit in self.source.bandits.items():
                tf.summary.histogram(f"dce/mean_saliency/{group}", bandit.mu)
        self.writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.every_steps and self.step % self.every_steps == 0:
            self.write(self.step)

    def on_epoch_end(self, epoch, logs=None):
        self.write(self.step)

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
