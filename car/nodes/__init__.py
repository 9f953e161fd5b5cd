"""Node cores: plain Python fed messages, returning messages; transports wrap them."""
