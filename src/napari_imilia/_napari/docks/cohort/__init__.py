"""The Cohort dock: the table, Score all / Write reports, the slide grade form."""
