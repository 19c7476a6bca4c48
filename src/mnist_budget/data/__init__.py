"""The data: idx data sets and their checks (``sets``, no torch), reading them (``loading``), the
Lightning data module (``datamodule``), batch augmentations (``augment``), any picture of a digit
made MNIST-like (``preprocess``), and digits drawn in handwriting fonts (``font_digits``)."""
