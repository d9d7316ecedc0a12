"""Worker processes behind one port: a supervising parent, its workers, and what they share."""
