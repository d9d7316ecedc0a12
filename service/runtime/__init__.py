"""Model runtimes behind one Backend protocol; only this package imports TensorFlow or LiteRT."""
