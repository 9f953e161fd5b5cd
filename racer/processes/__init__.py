"""The car's processes as the commands start them: the whole graph in this process (local), one node
(node), the supervised node processes (graph), the simulator world (sim_world) and the on-car console (console)."""
