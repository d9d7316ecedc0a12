"""Call metadata keys of Batchwise's own API, shared by the server's doors and the client."""

VARIANT_HEADER = "x-batchwise-variant"  # per-request variant override; the reply's initial metadata names the one used
