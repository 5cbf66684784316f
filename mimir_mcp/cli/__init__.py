"""The ``mimir-mcp`` command: ``main`` dispatches to serving (``serve``), the store's own commands
(``data``: export, import, reindex) and the measuring ones (``evaluate``: eval, bench, stress,
finetune-reranker). Each module imports what it runs only when it runs, so ``--help`` stays fast."""
