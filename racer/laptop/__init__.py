"""The laptop's side of a car's device console: the client (pinned TLS, API token), the typed console
API, mDNS discovery of cars, and the terminal keyboard that `racer teleop` drives with."""
