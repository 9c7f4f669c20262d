"""Sub-commands of ``imilia``; each module exposes ``register(subparsers)``."""
