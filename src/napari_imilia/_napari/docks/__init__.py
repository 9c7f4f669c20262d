"""The dock widgets (one module each; ``review/`` and ``cohort/`` where a dock has several
parts). Docks show and edit the viewer's state; they own none of it."""
