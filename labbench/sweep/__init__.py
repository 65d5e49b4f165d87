"""Sweeps: the sweep file and its validation, and the loop of trials over a grid and seeds.
May import: every other area."""
