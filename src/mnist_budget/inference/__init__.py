"""Using a trained network: the one path from images to probabilities, TTA and the unsure rule
(``classify``), the user's image files (``inputs``, no torch), export to ONNX / torch.export and
the runners that read the files back (``export``), and the HTTP service (``serving``)."""
