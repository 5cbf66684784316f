"""Search: the pipeline, fusion of the arms, snippets and diversity."""
