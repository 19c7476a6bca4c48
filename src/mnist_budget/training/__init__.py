"""Training with Lightning: the LightningModule (``module``), the callbacks and checkpoint writer
the Trainer is given (``callbacks``), the components built from the config (``builders``), and
trackers beyond TensorBoard (``loggers``)."""
