"""``python -m mimir_mcp``: the same entry point as the ``mimir-mcp`` console script."""

from mimir_mcp.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
