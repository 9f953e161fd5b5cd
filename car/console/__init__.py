"""The device console: the web app and JSON API through which a phone or laptop manages the car."""
