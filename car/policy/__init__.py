"""The policy: model bundles (archive, metadata, preprocessing spec), OpenVINO inference, DeepRacer
action decoding, the domain-shift monitor and the policy node core."""
