"""The Review dock: verdict form, entry list, drawn regions."""
