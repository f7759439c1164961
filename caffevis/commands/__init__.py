"""CLI subcommands; each module's ``register(subparsers)`` adds one (see caffevis.cli)."""
