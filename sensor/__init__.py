"""The sensor: capture, packet and flow decoding, industrial protocol decoders."""
