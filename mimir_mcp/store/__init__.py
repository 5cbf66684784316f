"""The store of record (Chroma), the record catalogue, writes grouped into one commit, and repair."""
