"""Progress per step: reward the lap progress made since the last step (percent), so the fastest
lap earns the most per second; a small bonus for staying near the centre keeps early episodes
alive. The module keeps the last progress between calls, as the AWS simulator keeps it loaded.
"""

last = {"progress": 0.0, "steps": 0}


def reward_function(params):
    if params["steps"] <= 1 or params["steps"] < last["steps"]:
        last["progress"] = 0.0
    gained = max(params["progress"] - last["progress"], 0.0)
    last["progress"], last["steps"] = params["progress"], params["steps"]
    if params["is_offtrack"]:
        return 1e-3
    centred = 1.0 - min(params["distance_from_center"] / (0.5 * params["track_width"]), 1.0)
    return float(gained * 10.0 + 0.1 * centred)
