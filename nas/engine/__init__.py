"""What `nas.NAS` runs: predict, val and info loops, `Results`, and input sources."""
