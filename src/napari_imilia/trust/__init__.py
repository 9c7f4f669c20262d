"""Input nobody vouched for: safe names and paths (``paths``), limits on JSON files
(``json_limits``) and on checkpoints (``checkpoints``). See docs/security.md."""
