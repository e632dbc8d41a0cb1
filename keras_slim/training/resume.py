"""Checkpoints and resume of a training run (the apps train, finetune and slim use it).

A run keeps in its output directory:

    state.json                    the run's flags, its finished phases and their outputs
    checkpoints/<phase>/backup/   keras.callbacks.BackupAndRestore: weights, optimizer
                                  (iterations, momentum), epoch and step
    checkpoints/<phase>/dce.bandit.json   DCE only: the CUCBCallback bandit state, saved
                                  at the same steps as the backup

Rerunning with the same --output_dir skips the finished phases and continues the
unfinished one from its last checkpoint; `resume=False` (the apps' `--noresume`)
starts over. A phase's
checkpoints are deleted once its outputs are written and it is marked finished.

BackupAndRestore differs between the flavours: tf_keras resumes inside the interrupted
epoch (at the step after the checkpoint), Keras 3 (3.15) restores weights, optimizer
and epoch but then redoes the interrupted epoch from its first batch, so its steps
would be counted twice. `fit` therefore reads the restored optimizer.iterations and, on
Keras 3, runs the rest of the interrupted epoch as its own fit on the dataset with the
finished batches skipped. The checkpoint's step is optimizer.iterations, so every
phase's optimizer must start at 0 (a fresh compile) and every epoch must have the same
number of steps.
"""
import json
import os
import shutil
import sys
import time

STATE_FILE = "state.json"
_STOPPED_EXIT_CODE = 3


class RunStateError(ValueError):
    """An output directory that cannot be resumed as asked; the message says why."""


class RunState:
    """state.json of an output directory: the settings a run was started with and its
    finished phases. `settings` ({name: value}) must not change on resume; with
    resume=False an existing state is discarded."""

    def __init__(self, out, settings, resume=True):
        self.out = out
        self.path = os.path.join(out, STATE_FILE)
        self.flags = dict(settings)
        self.phases = {}
        self.resumed = False
        if os.path.exists(self.path) and resume:
            with open(self.path) as f:
                try:
                    state = json.load(f)
                except json.JSONDecodeError as e:
                    raise RunStateError(f"--output_dir={out}: {self.path} is not valid JSON "
                                         f"({e}); pass --noresume to start over.") from None
            changed = sorted(n for n in self.flags
                             if state.get("flags", {}).get(n, self.flags[n]) != self.flags[n])
            if changed:
                was = ", ".join(f"--{n}={state['flags'][n]}" for n in changed)
                raise RunStateError(
                    f"--output_dir={out} holds a run started with {was}; resuming it with "
                    f"other values would mix two runs. Use the same flags, another "
                    f"--output_dir, or --noresume to start over.")
            self.phases = state.get("phases", {})
            self.resumed = True
        else:
            shutil.rmtree(os.path.join(out, "checkpoints"), ignore_errors=True)
        self._write()

    def _write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"flags": self.flags, "phases": self.phases}, f, indent=1, default=str)
        os.replace(tmp, self.path)

    def done(self, phase):
        """The outputs recorded for a finished phase, or None."""
        entry = self.phases.get(phase)
        return None if entry is None else entry.get("outputs", {})

    def checkpoint_dir(self, phase):
        return os.path.join(self.out, "checkpoints", phase)

    def finish(self, phase, **outputs):
        """Mark a phase finished (its outputs are written) and drop its checkpoints."""
        self.phases[phase] = {"outputs": outputs,
                              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._write()
        shutil.rmtree(self.checkpoint_dir(phase), ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(self.checkpoint_dir(phase)))
        except OSError:
            pass  # other phases' checkpoints are still there

    def skip_message(self, phase):
        outputs = self.done(phase)
        files = ", ".join(str(v) for v in outputs.values() if isinstance(v, str))
        return f"(finished in an earlier run, skipped{': ' + files if files else ''})"


def _backup_class():
    from keras_slim import compat
    from keras_slim.compat import keras

    class Backup(keras.callbacks.BackupAndRestore):
        """BackupAndRestore that keeps its checkpoint after fit (RunState.finish removes
        it), also saves at every epoch end when saving every N steps (so a finished
        epoch is never redone and the CUCBCallback, which does the same, saves at the
        same steps), and on Keras 3 lets fit's initial_epoch rule (see the module
        docstring)."""

        def __init__(self, backup_dir, save_freq):
            super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)

        def has_checkpoint(self):
            return os.path.isdir(self.backup_dir) and bool(os.listdir(self.backup_dir))

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if compat.KERAS3:
                self.model._initial_epoch = None  # set from the epoch it saved; we count

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if self.save_freq != "epoch":
                if compat.KERAS3:
                    self._save_model()
                else:
                    self._backup(epoch=epoch)

        def peek(self, model):
            """Restore the checkpoint into `model` now (fit restores it again) and
            return the step it was saved at (0 without a checkpoint)."""
            if not self.has_checkpoint():
                return 0
            self.set_model(model)
            self.on_train_begin()
            if not compat.KERAS3:
                # tf_keras keeps its training state on the model until on_train_end.
                del self._training_state
                del model._training_state
            return int(model.optimizer.iterations.numpy())

    return Backup


class StopAfter:
    """stop_after_steps (the apps' crash test): count training steps over every fit of the process and exit
    hard (no on_train_end, like a kill) after N of them."""
    steps = 0

    @classmethod
    def callback(cls, limit):
        from keras_slim.compat import keras

        class _Stop(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                cls.steps += 1
                if cls.steps >= limit:
                    print(f"\n--stop_after_steps={limit}: exiting after {cls.steps} steps "
                          f"(code {_STOPPED_EXIT_CODE})", flush=True)
                    sys.stderr.flush()
                    os._exit(_STOPPED_EXIT_CODE)
        return _Stop()


def fit(model, train, epochs, checkpoint_dir, callbacks=(), validation_data=None,
        verbose=1, on_resume=None, save_freq="epoch", stop_after_steps=None):
    """model.fit(train, epochs=epochs) that checkpoints into `checkpoint_dir` and, if a
    checkpoint is there, continues from it. `model` must be compiled with a fresh
    optimizer. on_resume(step) is called after the weights are restored and before
    training continues (e.g. to restore and check the bandit state). save_freq: steps
    between checkpoints, or "epoch". stop_after_steps: exit the process hard after that
    many steps (to test resuming). Returns the step it resumed at (0 for a fresh start)."""
    from keras_slim import compat

    steps = int(train.cardinality())
    if steps <= 0:
        raise ValueError("the training dataset must have a known, finite number of "
                         f"batches per epoch, got cardinality {steps}.")
    backup = _backup_class()(os.path.join(checkpoint_dir, "backup"), save_freq)
    done = backup.peek(model)
    epoch, skip = divmod(done, steps)
    if done:
        print(f"resuming from the checkpoint at step {done} (epoch {epoch + 1}, "
              f"{skip} of {steps} steps done) in {checkpoint_dir}")
    if on_resume is not None:
        on_resume(done)
    cbs = [backup, *callbacks]
    if stop_after_steps:
        cbs.append(StopAfter.callback(stop_after_steps))
    kwargs = dict(validation_data=validation_data, verbose=verbose, callbacks=cbs,
                  shuffle=False)  # the datasets come shuffled
    if not compat.KERAS3:
        model.fit(train, epochs=epochs, **kwargs)  # tf_keras resumes mid-epoch itself
        return done
    if skip and epoch < epochs:
        model.fit(train.skip(skip), epochs=epoch + 1, initial_epoch=epoch, **kwargs)
        epoch += 1
    if epoch < epochs:
        model.fit(train, epochs=epochs, initial_epoch=epoch, **kwargs)
    return done


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, default=str)
    os.replace(tmp, path)
