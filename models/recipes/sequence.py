"""`sequence`: a text-style classifier over token ids: Embedding -> LSTM -> LSTM|GRU -> Dense(sigmoid).

The generated task has real signal: each "review" is a padded sequence of word ids; ids 2..11
are positive words, 12..21 negative words, the rest neutral; the label says whether positive
words outnumber negative ones. The model has to count across the sequence, not spot one token.
"""

from __future__ import annotations

import numpy as np

from models.data import Dataset, class_labels, make_dataset, read_table
from models.errors import TrainerError
from models.options import RecipeDefaults, TrainOptions
from models.recipes.base import Recipe

SEQUENCE_LENGTH = 24
VOCABULARY = 64
N_EXAMPLES = 3000
POSITIVE = (2, 12)
NEGATIVE = (12, 22)
PAD = 0


def generate(seed: int, n: int = N_EXAMPLES, length: int = SEQUENCE_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Seeded sentiment-counting task: (tokens int32 [n', length], labels int32 in {0, 1}), ties dropped."""
    rng = np.random.default_rng(seed)
    n_pos, n_neg = rng.integers(0, 5, n), rng.integers(0, 5, n)
    keep = n_pos != n_neg
    n_pos, n_neg = n_pos[keep], n_neg[keep]
    tokens = rng.integers(NEGATIVE[1], VOCABULARY, size=(len(n_pos), length)).astype(np.int32)
    lengths = rng.integers(length // 2, length + 1, len(n_pos))
    for row, (pos, neg, used) in enumerate(zip(n_pos, n_neg, lengths, strict=True)):
        slots = rng.choice(used, pos + neg, replace=False)
        tokens[row, slots[:pos]] = rng.integers(*POSITIVE, pos)
        tokens[row, slots[pos:]] = rng.integers(*NEGATIVE, neg)
        tokens[row, used:] = PAD
    return tokens, (n_pos > n_neg).astype(np.int32)


def load_data(opts: TrainOptions) -> Dataset:
    """Generated data, or --data NPZ/CSV with integer token ids (one row per sequence) and 0/1 labels."""
    if opts.data is None:
        x, y = generate(opts.seed)
        source = f"generated: sentiment counting, seed {opts.seed}"
    else:
        x, raw_y = read_table(opts.data, opts.label_column)
        if x.ndim != 2:
            raise TrainerError(f"{opts.data}: shape mismatch, token ids must be [examples, length], got {x.shape}")
        if (x.dtype.kind == "f" and not np.all(np.mod(x, 1) == 0)) or x.min() < 0:
            raise TrainerError(f"{opts.data}: token ids must be non-negative integers")
        x, y, source = x.astype(np.int32), class_labels(raw_y, 2, str(opts.data)), str(opts.data)
    vocabulary = max(VOCABULARY, int(x.max()) + 1)
    return make_dataset(x, y, task="binary", input_name="tokens", source=source,
                        validation_split=opts.validation_split, seed=opts.seed,
                        info={"vocabulary": vocabulary, "sequence_length": int(x.shape[1])})


def build(data: Dataset, opts: TrainOptions):
    """Embedding(vocab, 16) -> LSTM(24, sequences) -> LSTM|GRU(24) -> [Dropout] -> Dense(1, sigmoid).

    The recurrent layers are unrolled: Keras 3 LSTMs otherwise become a while loop over TensorLists
    that the TFLite converter cannot lower without Flex ops, which LiteRT CPU nodes do not have.
    """
    import keras

    from models.recipes.layers import dropout, head
    from models.training import regularizer

    second = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[opts.rnn]
    inputs = keras.Input(shape=(data.info["sequence_length"],), dtype="int32", name=data.input_name)
    hidden = keras.layers.Embedding(data.info["vocabulary"], 16)(inputs)
    hidden = keras.layers.LSTM(24, return_sequences=True, unroll=True, kernel_regularizer=regularizer(opts))(hidden)
    hidden = second(24, unroll=True, kernel_regularizer=regularizer(opts))(hidden)
    hidden = dropout(hidden, opts, default=0.0)
    return keras.Model(inputs, head(hidden, data, opts), name="sequence")


RECIPE = Recipe("sequence", "Embedding -> LSTM -> LSTM|GRU (--rnn) over token ids, binary; input `tokens` [N,L] int32",
                RecipeDefaults(epochs=8, batch_size=32, learning_rate=0.005), load_data, build)
