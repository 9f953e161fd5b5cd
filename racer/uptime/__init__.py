"""Long-run checks of the car: the soak run (`soak`) and the state dir's crash consistency (`crash`)."""
