"""Helpers shared by test folders: generated slides, small models, scored slides."""
