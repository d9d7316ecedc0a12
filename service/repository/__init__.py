"""The model repository: on-disk layout, version policy and the ModelManager lifecycle."""
