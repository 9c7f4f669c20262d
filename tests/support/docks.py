"""The dock widgets of the manifest, by display name."""

DOCKS = (
    "Slide and model",
    "Heatmap",
    "Top tiles",
    "Tile inspector",
    "Plots",
    "Review",
    "Export / import",
    "Cohort",
)
