"""Running the node cores as a graph: the adapters that put a core on a bus, and each way of running
them (stack and runtime: in one process; multiprocess: one process per node; supervisor), with the
simulator link and the recorder."""
