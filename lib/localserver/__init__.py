"""The local IBEX server: sockets, timers, joins, recording, HTTP and create; rules come from games/."""
