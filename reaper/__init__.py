"""The scheduled Lambda that frees locks a crashed writer left behind and collects garbage."""
