"""Reading frames from capture files and decoding link, IP and transport headers."""
