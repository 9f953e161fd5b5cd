"""The AWS console's first example reward: follow the centre line.

Three bands around the centre line at 10%, 25% and 50% of the track width give 1.0, 0.5 and 0.1;
farther out (or off track) 0.001.
"""


def reward_function(params):
    width = params["track_width"]
    distance = params["distance_from_center"]
    if distance <= 0.1 * width:
        return 1.0
    if distance <= 0.25 * width:
        return 0.5
    if distance <= 0.5 * width:
        return 0.1
    return 1e-3
