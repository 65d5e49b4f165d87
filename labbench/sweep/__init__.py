"""Sweeps: the sweep file and its validation, the loop of trials over a grid and seeds, and each
configuration's memory plan (sweepmemory).
May import: every other area."""
