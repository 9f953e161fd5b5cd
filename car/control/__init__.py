"""Mode arbitration, command multiplexing and the safety watchdog (pure logic, no I/O)."""
