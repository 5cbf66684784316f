"""The BM25 arm: what a text's terms are, the pure index, and the index kept in step with the catalogue."""
