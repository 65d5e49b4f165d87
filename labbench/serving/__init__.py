"""Talking to model servers: starting and always stopping mlx_lm.server (`server`), one chat
request with its retries (`chatclient`), several servers as one (`endpoints`), and a server
that replays known answers (`replay`). May import: tiny, machine, core."""
