"""Measuring retrieval quality: BEIR-format loading, IR metrics, and the ``eval`` command."""
