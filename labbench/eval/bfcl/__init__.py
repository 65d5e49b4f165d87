"""The Berkeley Function Calling Leaderboard built in: its questions as suites (`suite`), its
own checker behind our decoding (`check`), and the leaderboard's summaries (`summary`).
Part of eval: may import what eval imports."""
