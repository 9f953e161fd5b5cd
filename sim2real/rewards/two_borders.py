"""The AWS console's second example reward: stay inside the two borders.

1.0 while all four wheels are on the track and the car keeps a margin of 5 cm to the border,
0.001 otherwise.
"""

MARGIN_M = 0.05


def reward_function(params):
    half_width = 0.5 * params["track_width"]
    if params["all_wheels_on_track"] and half_width - params["distance_from_center"] >= MARGIN_M:
        return 1.0
    return 1e-3
