"""Offline trainer: tf.keras recipes that publish SavedModels and TFLite variants into a model repository."""
