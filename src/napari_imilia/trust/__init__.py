"""Input nobody vouched for: safe names and paths (``paths``), limits on JSON files
(``json_limits``), on checkpoints (``checkpoints``) and the gate every results-folder file
passes (``results``). See docs/security.md."""
