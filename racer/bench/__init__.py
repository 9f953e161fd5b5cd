"""`racer bench`: the performance figures (figures.py) and what measures them: the DeepRacer reference
network, transports across processes, the console under a flood."""
