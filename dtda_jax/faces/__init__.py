"""Face detection (MTCNN with the original weights) and face crops for the FAS pipeline."""
