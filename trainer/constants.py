"""Feature keys, label and tunables: the one place the rest of the trainer reads them from."""

# The four measurements, in CSV column order; also the serving signature's input names.
FEATURES = ("SepalLength", "SepalWidth", "PetalLength", "PetalWidth")
# The label column (last in the CSV): 0 setosa, 1 versicolor, 2 virginica.
LABEL = "Species"
CLASSES = ("setosa", "versicolor", "virginica")
# CSV columns per data row: the features, then the label.
NUM_COLUMNS = len(FEATURES) + 1

# Defaults of the command-line flags (task.py states them in each help text).
TRAIN_STEPS = 1000
BATCH_SIZE = 32
LEARNING_RATE = 0.01
HIDDEN_UNITS = (10, 10)
# Seeds weights, shuffling and everything random: the same seed, the same model and metrics.
SEED = 42
# Beyond these a run would only exhaust memory or time: refused as bad usage up front.
MAX_BATCH_SIZE = 1 << 20
MAX_HIDDEN_UNITS = 1 << 14
# Blocks the shuffle mixes across, on top of shuffling the rows within each block.
SHUFFLE_BLOCKS = 8
# Bytes read, split into lines and parsed per vectorised step (about 3,000 Iris rows):
# larger blocks amortise per-op overhead, smaller ones shuffle more finely.
READ_CHUNK = 64 * 1024
# The longest line a data file may have. A row of four numbers and a label is tens of bytes;
# a file whose "line" goes on for megabytes has no line breaks where they belong (carriage
# returns alone, one long record), and carrying such a line from block to block would cost
# time growing with its square (48 MB: 97 s) before its row was even checked.
MAX_LINE_BYTES = 1 << 20
