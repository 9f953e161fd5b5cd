"""The control node: mode arbitration, command multiplexing, the safety watchdog, the /control/command
parser and the node core (pure logic, no I/O)."""
