"""The suite's training budget (full and --quick sizes) and the data and models it uses.

Full and quick run the same code; only the numbers below differ. Every row of a model
gets the same budget: baseline and scratch rows train epochs + finetune_epochs; the
pruning rows train `epochs` (sparsity / DCE / normal) and fine-tune `finetune_epochs`.
The dataset is Fashion-MNIST (offline here); `suite.py --dataset cifar10` or
`svhn_cropped` runs the same budget on a tfds dataset for users who can download it.
"""
import dataclasses

from benchmarks.common import build_model
from keras_slim.compat import keras
from keras_slim.zoo import data

DATASET = "fashion_mnist"  # the default; Budget.dataset overrides it


@dataclasses.dataclass
class Budget:
    label: str                    # "full" or "QUICK"
    train_examples: int           # first N of the dataset's train split
    test_examples: int            # first N of the test split (10000 = all)
    epochs: int                   # E: normal / sparsity / DCE training epochs
    finetune_epochs: int          # F: fine-tuning epochs after pruning
    seeds: int                    # seeds of the baseline and DCE rows (mean ± std)
    dce_warmup_steps: int         # DCE τ: random active sets first
    # Sparsity λ of the slimming rows, from benchmarks/slimming_lambda_sweep.py
    # (results/slimming_lambda.md): the best accuracy after pruning 70% of 5e-3, 1e-2, 2e-2.
    l1: float = 1e-2
    ratios: tuple = (0.5, 0.7)    # slimming t of the rows
    dce_fractions: tuple = (0.5, 0.3)
    batch_size: int = 128
    calibration: int = 200        # int8 representative samples
    latency_runs: int = 300       # LiteRT invokes per round
    latency_rounds: int = 5       # interleaved rounds over all files of a model
    # NS §5 / DCE analyses (vgg_small)
    t_values: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    t_finetune_epochs: int = 1
    gamma_lambdas: tuple = (0.0, 1e-5, 1e-4)
    p_values: tuple = (0.3, 0.5, 0.7, 0.9, 1.0)
    # step-time ratios (the benchmarks/*_step_time.py scripts)
    step_time_steps: int = 30
    step_time_rounds: int = 5
    dataset: str = DATASET        # any keras_slim.zoo.data.SUPPORTED name

    @property
    def train_split(self):
        return f"train[:{self.train_examples}]"


FULL = Budget(label="full", train_examples=20000, test_examples=10000, epochs=3,
              finetune_epochs=2, seeds=3, dce_warmup_steps=100)
QUICK = Budget(label="QUICK", train_examples=2000, test_examples=1000, epochs=1,
               finetune_epochs=1, seeds=1, dce_warmup_steps=5, calibration=50,
               latency_runs=100, latency_rounds=3, t_values=(0.1, 0.3, 0.5, 0.7, 0.9),
               step_time_steps=10, step_time_rounds=3)


class Context:
    """Data, model builders and the shared cache of one suite run."""

    def __init__(self, budget, workdir):
        self.budget, self.workdir = budget, workdir
        self.train, self.info = data.load(budget.dataset, budget.train_split,
                                          batch_size=budget.batch_size, seed=0)
        self.test, _ = data.load(budget.dataset, "test", batch_size=512,
                                 take=budget.test_examples)
        self.x_test, self.y_test = data.numpy_arrays(budget.dataset, "test",
                                                     take=budget.test_examples)
        self.x_cal, _ = data.numpy_arrays(budget.dataset, "train", take=budget.calibration)
        self.steps = int(self.train.cardinality())
        self.memo = {}  # training runs shared by the parts (see suite_runs)

    def build(self, name, **kwargs):
        return build_model(name, self.info, **kwargs)

    def builder(self, name):
        return lambda: self.build(name)

    def initial(self, name, seed):
        """The initial weights of `name` for `seed`: the same for every row of a seed."""
        key = ("initial", name, seed)
        if key not in self.memo:
            keras.utils.set_random_seed(seed)
            self.memo[key] = self.build(name).get_weights()
        return self.memo[key]
